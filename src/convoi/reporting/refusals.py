"""What a receiver's answer to an event POST means for that event (pure: no I/O).

=====================================  =================  ==========================================
Answer                                 :class:`Verdict`   What delivery does
=====================================  =================  ==========================================
2xx; 409 (the receiver has the id)     ``DELIVERED``      marks the event delivered
404, 410 (the call is not known)       ``CALL_UNKNOWN``   retries with backoff; after
                                                          ``CONVOI_DELIVERY_DEAD_LETTER_AFTER``
                                                          refusals the event *and every pending
                                                          event of its call* go to the dead letters
                                                          (later events of the call too)
400, 413, 422 (this event is refused)  ``REFUSED``        the same, for this event only: the call's
                                                          later events keep flowing
401, 403, 3xx, other 4xx               ``MISCONFIGURED``  retried with backoff, never dead-lettered:
                                                          the sender's secret or URL is wrong, not
                                                          the event (logged at error once per event)
408, 425, 429, 5xx, network, timeout   ``RETRY``          retried with backoff (``Retry-After``
                                                          honoured on 429/503)
=====================================  =================  ==========================================

A refusal is retried a few times before it is final because it may be transient (a control plane
restored from a backup, a receiver that commits the call a moment late); the bound keeps one event
from being POSTed forever by every job process.
"""

from __future__ import annotations

import json
from enum import StrEnum

__all__ = ["Verdict", "classify", "error_code"]

_MAX_CODE_CHARS = 64


class Verdict(StrEnum):
    """What to do with an event after one answer (see the module's table)."""

    DELIVERED = "delivered"
    CALL_UNKNOWN = "call_unknown"
    REFUSED = "refused"
    MISCONFIGURED = "misconfigured"
    RETRY = "retry"

    @property
    def permanent(self) -> bool:
        """A refusal that ends in the dead letters once repeated often enough."""
        return self in (Verdict.CALL_UNKNOWN, Verdict.REFUSED)


_BY_STATUS = {
    409: Verdict.DELIVERED,
    404: Verdict.CALL_UNKNOWN,
    410: Verdict.CALL_UNKNOWN,
    400: Verdict.REFUSED,
    413: Verdict.REFUSED,
    422: Verdict.REFUSED,
    408: Verdict.RETRY,
    425: Verdict.RETRY,
    429: Verdict.RETRY,
}


def classify(status: int | None) -> Verdict:
    """The verdict for an HTTP ``status`` (``None``: no answer, a network error or timeout)."""
    if status is None or status >= 500:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    return _BY_STATUS.get(status, Verdict.MISCONFIGURED)


def error_code(body: bytes) -> str | None:
    """The receiver's machine-readable error code in an error ``body``, if it has one.

    Understands the control plane's ``{"error": {"code": "call_not_found", ...}}`` and the
    reference receiver's ``{"error": "invalid_signature", ...}``. Only the code is returned (short,
    printable): the rest of the body is never stored nor logged.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("code")
    if not isinstance(error, str) or not error.isprintable():
        return None
    return error[:_MAX_CODE_CHARS] or None
