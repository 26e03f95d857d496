"""What a failed dial means for the call: status, ended_reason, fault and a readable detail.

Pure: no I/O. :func:`dial_outcome` is the one place that turns "the phone did not get
answered" into the docs/architecture.md §7 taxonomy. Its table, exactly:

=====================================  ============  ==================  ==========
SIP final response / situation         status        ended_reason        fault
=====================================  ============  ==================  ==========
486 Busy Here, 600 Busy Everywhere     ``busy``      ``dial_busy``       customer
480 Temporarily Unavailable,           ``no_answer`` ``dial_no_answer``  customer
408 Request Timeout
487 Request Terminated after *our*     ``no_answer`` ``dial_no_answer``  customer
ring timeout (``timed_out=True``)
ring timeout without a SIP code        ``no_answer`` ``dial_no_answer``  customer
(``timed_out=True``, or the bridge's
"sip request timed out")
401, 403, 407 (our trunk's             ``failed``    ``dial_failed``     config
credentials / permissions)
404, 410, 484, 485, 603, 604, 607,     ``failed``    ``dial_failed``     customer
608 (the number or the callee
refused / does not exist)
487 *not* after our ring timeout       ``failed``    ``dial_failed``     platform
(our side cancelled the INVITE)
any other code (400, 488, 5xx, 606 …)  ``failed``    ``dial_failed``     provider
no code: trunk config errors          ``failed``    ``dial_failed``     config
("required auth …", "no such host",
"requested sip trunk does not exist")
no code: "transaction failed to        ``failed``    ``dial_failed``     provider
complete" (carrier never answered)
no code, anything else (LiveKit        ``failed``    ``dial_failed``     platform
unreachable, no SIP service, …)
=====================================  ============  ==================  ==========

Decisions:

- **Busy / no-answer codes win over** ``timed_out``: if the carrier said 486, the callee was busy
  however long it took. ``timed_out`` only turns a 487 (the answer to the CANCEL our ring timeout
  sent) and a missing code into ``no_answer``.
- **No SIP code at all is a platform fault** by default: the dial never produced a SIP answer from
  anyone, so it failed on our side of the carrier (LiveKit unreachable, no SIP bridge
  connected, psrpc "no response from servers"). The few bridge messages that do point elsewhere
  (missing/rejected trunk credentials → config; INVITE transaction never completed → provider)
  are matched by :data:`CONFIG_MARKERS` / :data:`PROVIDER_MARKERS`.
- ``fault`` is finer than :func:`convoi.lifecycle.status.classify` (which says ``provider`` for
  every ``dial_failed``): pass ``fault=outcome.fault`` to ``CallLifecycle.end``.
- ``detail`` always carries the SIP code *and* reason phrase, e.g. ``"SIP 603 Decline"``; the
  phrase comes from :data:`SIP_REASON_PHRASES`, and the server's own text is appended in
  parentheses when it says something else (``"SIP 503 Service Unavailable (cps limit
  exceeded)"``). Details are capped at :data:`MAX_DETAIL` characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from convoi.lifecycle import EndedReason, Fault, TerminalStatus

__all__ = [
    "BUSY_CODES",
    "CONFIG_FAULT_CODES",
    "CONFIG_MARKERS",
    "CUSTOMER_FAULT_CODES",
    "MAX_DETAIL",
    "NO_ANSWER_CODES",
    "PROVIDER_MARKERS",
    "REQUEST_TERMINATED",
    "RING_TIMEOUT_MARKERS",
    "SIP_REASON_PHRASES",
    "DialOutcome",
    "dial_outcome",
    "reason_phrase",
]

SIP_REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}
"""Reason phrases of the SIP response codes a dial commonly ends with (RFC 3261 and successors)."""

BUSY_CODES: Final[frozenset[int]] = frozenset({486, 600})
NO_ANSWER_CODES: Final[frozenset[int]] = frozenset({408, 480})
REQUEST_TERMINATED: Final[int] = 487
CONFIG_FAULT_CODES: Final[frozenset[int]] = frozenset({401, 403, 407})
"""Our trunk's credentials or permissions were refused."""
CUSTOMER_FAULT_CODES: Final[frozenset[int]] = frozenset({404, 410, 484, 485, 603, 604, 607, 608})
"""The number does not exist / is incomplete, or the callee (or their network) refused the call."""

RING_TIMEOUT_MARKERS: Final[tuple[str, ...]] = ("sip request timed out",)
"""Text livekit-sip returns (twirp ``canceled``, no SIP code) when ``ringing_timeout`` elapsed."""
CONFIG_MARKERS: Final[tuple[str, ...]] = (
    "required auth, but no username or password",
    "max auth retry",
    "no auth header",
    "no such host",
    "sip trunk does not exist",
)
"""Codeless errors caused by the trunk configuration (credentials, address, unknown trunk id)."""
PROVIDER_MARKERS: Final[tuple[str, ...]] = ("transaction failed to complete",)
"""Codeless bridge errors where the carrier never completed the INVITE transaction."""

MAX_DETAIL: Final[int] = 300


@dataclass(frozen=True, slots=True)
class DialOutcome:
    """How a dial that was not answered ends the call (feed it to ``CallLifecycle.end``)."""

    status: TerminalStatus
    ended_reason: EndedReason
    fault: Fault
    detail: str
    """Human-readable, e.g. ``"SIP 486 Busy Here"`` or ``"no answer within 30s"``."""
    sip_status_code: int | None = None
    """The SIP final response code, when the carrier sent one."""


def reason_phrase(code: int) -> str | None:
    """The standard reason phrase of a SIP response code (``None`` for unknown codes)."""
    return SIP_REASON_PHRASES.get(code)


def dial_outcome(sip_status_code: int | None, *, timed_out: bool, message: str) -> DialOutcome:
    """Map one dial failure to its :class:`DialOutcome` (see the module table).

    ``sip_status_code``: the SIP final response, ``None`` when there was none (transport error,
    no SIP service, ring timeout reported without a code). ``timed_out``: our ringing timeout
    elapsed before the failure arrived. ``message``: the server's text (SIP reason phrase or
    error message), used for the codeless markers and appended to ``detail``.
    """
    text = " ".join(message.split())
    if sip_status_code is None:
        return _codeless(timed_out=timed_out, text=text)

    code = sip_status_code
    detail = _sip_detail(code, text)
    if code in BUSY_CODES:
        return DialOutcome("busy", "dial_busy", "customer", detail, code)
    if code in NO_ANSWER_CODES or (code == REQUEST_TERMINATED and timed_out):
        return DialOutcome("no_answer", "dial_no_answer", "customer", detail, code)
    fault: Fault
    if code == REQUEST_TERMINATED:
        fault = "platform"
    elif code in CONFIG_FAULT_CODES:
        fault = "config"
    elif code in CUSTOMER_FAULT_CODES:
        fault = "customer"
    else:
        fault = "provider"
    return DialOutcome("failed", "dial_failed", fault, detail, code)


def _codeless(*, timed_out: bool, text: str) -> DialOutcome:
    folded = text.casefold()
    if timed_out or any(m in folded for m in RING_TIMEOUT_MARKERS):
        detail = _cap(text or "no answer before the ringing timeout")
        return DialOutcome("no_answer", "dial_no_answer", "customer", detail)
    fault: Fault = "platform"
    if any(m in folded for m in CONFIG_MARKERS):
        fault = "config"
    elif any(m in folded for m in PROVIDER_MARKERS):
        fault = "provider"
    detail = _cap(f"no SIP response: {text}" if text else "no SIP response")
    return DialOutcome("failed", "dial_failed", fault, detail)


def _sip_detail(code: int, text: str) -> str:
    phrase = reason_phrase(code)
    head = f"SIP {code} {phrase or text or 'Unknown'}"
    if (
        text
        and phrase
        and text.casefold() not in {phrase.casefold(), f"{code} {phrase}".casefold()}
    ):
        head += f" ({text})"
    return _cap(head)


def _cap(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
