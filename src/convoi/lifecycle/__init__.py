"""Call lifecycle: the status state machine and the ended_reason → (status, fault) mapping."""

from convoi.lifecycle.status import (
    ALL_STATUSES,
    TERMINAL_STATUSES,
    CallLifecycle,
    IllegalTransition,
    TerminalStatus,
    Transition,
    classify,
    is_legal,
)

__all__ = [
    "ALL_STATUSES",
    "TERMINAL_STATUSES",
    "CallLifecycle",
    "IllegalTransition",
    "TerminalStatus",
    "Transition",
    "classify",
    "is_legal",
]
