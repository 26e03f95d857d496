"""Call lifecycle: the status vocabulary, the status state machine and the ended_reason →
(status, fault) mapping.

The vocabulary (:data:`CallStatus`, :data:`TerminalStatus`, :data:`EndedReason`, :data:`Fault`)
lives in :mod:`convoi.lifecycle.vocabulary`; this package imports nothing else of ``convoi``, so
every other package may depend on it.
"""

from convoi.lifecycle.status import (
    ALL_STATUSES,
    TERMINAL_STATUSES,
    CallLifecycle,
    IllegalTransition,
    Transition,
    classify,
    is_legal,
)
from convoi.lifecycle.vocabulary import CallStatus, EndedReason, Fault, TerminalStatus

__all__ = [
    "ALL_STATUSES",
    "TERMINAL_STATUSES",
    "CallLifecycle",
    "CallStatus",
    "EndedReason",
    "Fault",
    "IllegalTransition",
    "TerminalStatus",
    "Transition",
    "classify",
    "is_legal",
]
