"""Call lifecycle as a pure state machine (docs/architecture.md §7).

Statuses (:data:`~convoi.lifecycle.vocabulary.CallStatus`)::

    initiated ──▶ ringing ──▶ active ──▶ completed | failed
        │  (phone)   │
        │            └──▶ busy | no_answer | failed | canceled
        └──▶ active | busy* | no_answer* | failed | canceled          (* phone calls only)

Legal transitions, exactly (:func:`is_legal`):

=============  =======================================================================
from           to
=============  =======================================================================
``initiated``  ``ringing`` (phone), ``active``, ``busy`` (phone), ``no_answer`` (phone),
               ``failed``, ``canceled``
``ringing``    ``active``, ``busy``, ``no_answer``, ``failed``, ``canceled`` (phone only)
``active``     ``completed``, ``failed``
terminal       nothing
=============  =======================================================================

Why:

- ``ringing`` exists only for phone calls: a web call has nothing that rings.
- ``busy`` / ``no_answer`` are outcomes of dialling, so phone only, and only before ``active``. A
  SIP trunk may answer ``486 Busy`` (or time out) without ever sending ``180 Ringing``, hence also
  straight from ``initiated``.
- ``completed`` means a conversation took place, so it is reachable from ``active`` only. A call
  that ends before it was ever active is ``failed``, ``busy``, ``no_answer`` or ``canceled``.
- ``canceled`` means the call was withdrawn before it connected (for example the worker drained
  while the phone was still ringing). Once ``active`` the call has happened: it ends
  ``completed`` or ``failed``, never ``canceled``. No :data:`EndedReason` classifies as
  ``canceled``; it is chosen explicitly with :meth:`CallLifecycle.cancel` (or ``end(...,
  status="canceled")``).
- No self-transitions and nothing out of a terminal state: a second ``end()`` raises
  :class:`IllegalTransition` (check :attr:`CallLifecycle.is_terminal` first).

Fault mapping (:func:`classify`). ``fault`` answers *whose side made the call not succeed*, so:

- Normal endings of a conversation: ``customer_hangup``, ``agent_hangup``, ``transferred``,
  ``silence_timeout``, ``max_duration``, ``voicemail`` → ``completed`` with fault ``None``. Nothing
  went wrong, so there is nobody to blame; in particular ``customer_hangup`` is not a customer
  fault. (Fault is optional in the event contract precisely for this case.)
- ``dial_busy`` → (``busy``, ``customer``); ``dial_no_answer`` → (``no_answer``, ``customer``):
  the callee's side did not take the call.
- ``dial_failed`` → (``failed``, ``provider``): the trunk/carrier rejected or could not route it.
- ``participant_never_joined`` → (``failed``, ``customer``): we were ready, the person never came.
  ``failed`` rather than ``canceled`` because nobody withdrew the call; it was attempted and did
  not happen.
- ``invalid_request`` → (``failed``, ``config``); ``provider_error`` → (``failed``, ``provider``);
  ``worker_shutdown``, ``worker_error`` and ``worker_lost`` → (``failed``, ``platform``).
  ``worker_lost`` is the control plane's verdict (no event from the worker within the call's
  lease, :mod:`convoi.controlplane.leases`); a worker never reports it.
- ``api_hangup`` → (``completed``, ``None``): the customer's server ended the call through
  ``POST /api/v1/public/calls/{id}/end`` (the agent finishes its sentence first). A call ended
  that way before it was active is ``canceled`` instead (chosen explicitly).

``end(reason, at, status=..., fault=...)`` may override either half of the classification (e.g.
``worker_shutdown`` while still ringing → :meth:`~CallLifecycle.cancel`); the transition table
still applies.

Time: ``at`` arguments are Unix times (seconds, float). Duration counts from entering ``active``
only (0 for a call that never became active) and is never negative, even if the clock stepped
back between two transitions.
"""

from __future__ import annotations

from typing import Final, NamedTuple, get_args

from convoi.lifecycle.vocabulary import CallStatus, EndedReason, Fault, TerminalStatus

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

ALL_STATUSES: Final[tuple[CallStatus, ...]] = get_args(CallStatus)
TERMINAL_STATUSES: Final[frozenset[CallStatus]] = frozenset(get_args(TerminalStatus))

_PHONE: Final[dict[CallStatus, frozenset[CallStatus]]] = {
    "initiated": frozenset({"ringing", "active", "busy", "no_answer", "failed", "canceled"}),
    "ringing": frozenset({"active", "busy", "no_answer", "failed", "canceled"}),
    "active": frozenset({"completed", "failed"}),
}
_WEB: Final[dict[CallStatus, frozenset[CallStatus]]] = {
    "initiated": frozenset({"active", "failed", "canceled"}),
    "active": frozenset({"completed", "failed"}),
}

_CLASSIFICATION: Final[dict[EndedReason, tuple[TerminalStatus, Fault | None]]] = {
    "customer_hangup": ("completed", None),
    "agent_hangup": ("completed", None),
    "transferred": ("completed", None),
    "silence_timeout": ("completed", None),
    "max_duration": ("completed", None),
    "voicemail": ("completed", None),
    "dial_busy": ("busy", "customer"),
    "dial_no_answer": ("no_answer", "customer"),
    "dial_failed": ("failed", "provider"),
    "participant_never_joined": ("failed", "customer"),
    "invalid_request": ("failed", "config"),
    "provider_error": ("failed", "provider"),
    "worker_shutdown": ("failed", "platform"),
    "worker_error": ("failed", "platform"),
    "worker_lost": ("failed", "platform"),
    "api_hangup": ("completed", None),
}


class IllegalTransition(ValueError):
    """A status change the lifecycle does not allow (see the table in the module docstring)."""

    def __init__(self, from_status: CallStatus, to_status: str, *, phone: bool) -> None:
        self.from_status = from_status
        self.to_status = to_status
        self.phone = phone
        kind = "phone" if phone else "web"
        super().__init__(
            f"illegal call status transition {from_status} -> {to_status} ({kind} call)"
        )


class Transition(NamedTuple):
    """One recorded status change."""

    from_status: CallStatus
    to_status: CallStatus
    at: float


def is_legal(from_status: CallStatus, to_status: CallStatus, *, phone: bool) -> bool:
    """True when ``from_status -> to_status`` is allowed for a phone (or web) call."""
    table = _PHONE if phone else _WEB
    return to_status in table.get(from_status, frozenset())


def classify(reason: EndedReason) -> tuple[TerminalStatus, Fault | None]:
    """The terminal status and fault a call ending for ``reason`` gets by default.

    Raises :class:`ValueError` for a string that is not an :data:`EndedReason`.
    """
    try:
        return _CLASSIFICATION[reason]
    except KeyError:
        raise ValueError(f"unknown ended_reason {reason!r}") from None


class CallLifecycle:
    """The status of one call, changed only through legal transitions.

    State is read through properties; the only way to change it is :meth:`ringing`,
    :meth:`activate`, :meth:`end` and :meth:`cancel`, each of which either applies the change
    completely or raises :class:`IllegalTransition` and changes nothing.
    """

    __slots__ = (
        "_ended_at",
        "_ended_reason",
        "_fault",
        "_initiated_at",
        "_phone",
        "_started_at",
        "_status",
        "_transitions",
    )

    def __init__(self, *, phone: bool, initiated_at: float) -> None:
        """A new call in ``initiated``; ``phone`` enables ``ringing``, ``busy`` and ``no_answer``."""
        self._phone = phone
        self._initiated_at = initiated_at
        self._status: CallStatus = "initiated"
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._ended_reason: EndedReason | None = None
        self._fault: Fault | None = None
        self._transitions: list[Transition] = []

    # --- state ---------------------------------------------------------------------------------

    @property
    def phone(self) -> bool:
        """True for a phone call, False for a web call."""
        return self._phone

    @property
    def status(self) -> CallStatus:
        """The current status."""
        return self._status

    @property
    def is_terminal(self) -> bool:
        """True once the call has ended (any of :data:`TERMINAL_STATUSES`)."""
        return self._status in TERMINAL_STATUSES

    @property
    def initiated_at(self) -> float:
        """When the call was created."""
        return self._initiated_at

    @property
    def started_at(self) -> float | None:
        """When the call entered ``active``; ``None`` if it never did."""
        return self._started_at

    @property
    def ended_at(self) -> float | None:
        """When the call reached its terminal status; ``None`` while it is live."""
        return self._ended_at

    @property
    def ended_reason(self) -> EndedReason | None:
        """Why the call ended; ``None`` while it is live."""
        return self._ended_reason

    @property
    def fault(self) -> Fault | None:
        """Whose side made the call not succeed; ``None`` while live and for normal endings."""
        return self._fault

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """Every status change so far, oldest first (a copy)."""
        return tuple(self._transitions)

    def can(self, to_status: CallStatus) -> bool:
        """True when moving to ``to_status`` now would be legal."""
        return is_legal(self._status, to_status, phone=self._phone)

    def duration_seconds(self, now: float) -> float:
        """Seconds since entering ``active`` (until ``ended_at`` once ended); 0 if never active."""
        if self._started_at is None:
            return 0.0
        end = self._ended_at if self._ended_at is not None else now
        return max(0.0, end - self._started_at)

    # --- transitions ---------------------------------------------------------------------------

    def ringing(self, at: float) -> None:
        """The callee's phone is ringing (phone calls only)."""
        self._move("ringing", at)

    def activate(self, at: float) -> None:
        """The conversation starts (the callee answered / the participant joined)."""
        self._move("active", at)
        self._started_at = at

    def end(
        self,
        reason: EndedReason,
        at: float,
        *,
        status: TerminalStatus | None = None,
        fault: Fault | None = None,
    ) -> None:
        """End the call for ``reason``.

        The terminal status and fault come from :func:`classify`; ``status`` / ``fault`` override
        them when given. Raises :class:`IllegalTransition` if the resulting status is not
        reachable from the current one (including when the call has already ended).
        """
        default_status, default_fault = classify(reason)
        target = default_status if status is None else status
        if target not in TERMINAL_STATUSES:
            raise ValueError(f"end() needs a terminal status, got {target!r}")
        self._move(target, at)
        self._ended_at = at
        self._ended_reason = reason
        self._fault = default_fault if fault is None else fault

    def cancel(self, reason: EndedReason, at: float, *, fault: Fault | None = None) -> None:
        """End a call that never connected as ``canceled`` (legal from initiated/ringing only)."""
        self.end(reason, at, status="canceled", fault=fault)

    def _move(self, to_status: CallStatus, at: float) -> None:
        if not self.can(to_status):
            raise IllegalTransition(self._status, to_status, phone=self._phone)
        self._transitions.append(Transition(self._status, to_status, at))
        self._status = to_status

    def __repr__(self) -> str:
        kind = "phone" if self._phone else "web"
        extra = f", ended_reason={self._ended_reason!r}, fault={self._fault!r}"
        return f"CallLifecycle({kind}, status={self._status!r}{extra if self.is_terminal else ''})"
