"""Place an outbound phone call through LiveKit SIP and wait for the answer.

:func:`dial` sends one ``CreateSIPParticipant`` with ``wait_until_answered=True``:

- ``sip_trunk_id`` = ``phone.sip.trunk_id`` when the number has a provisioned trunk; otherwise
  an inline ``SIPOutboundConfig`` built from the definitions (address, transport, username, the
  password read from the variable named by ``auth_password_env``);
- ``sip_number`` = ``phone.number`` (our caller id), ``sip_call_to`` = the customer's number;
- ``ringing_timeout`` / ``max_call_duration`` as ``Duration``; no dial tone played into the room;
- ``participant_name`` = ``display_name`` (the customer's name, for transcripts). It is *not*
  sent as the SIP ``display_name``, which would show the customer's own name as our caller id.

Error boundary (decision): **dial failures are returned, not raised.** Every ``SipCallError``,
``ServerError``/``TwirpError``, aiohttp error and timeout becomes
``DialResult(answered=False, outcome=...)`` via :func:`~convoi.telephony.outcomes.dial_outcome`.
Only two things raise: :class:`~convoi.telephony.trunk.TrunkConfigError` (bad trunk config,
e.g. the password variable is unset; raised *before* dialling, carries ``.outcome``), and
``asyncio.CancelledError`` (after a best-effort :func:`hang_up`, so a phone is not left ringing
when the worker shuts down).

Timeouts: the request is bounded by ``ringing_timeout + DIAL_REQUEST_MARGIN`` seconds. The
bridge itself reports the ring timeout (livekit-sip: twirp ``canceled`` "sip request timed
out"), which maps to ``no_answer``. If *our* bound fires instead, LiveKit did not answer in
time: that is ``failed`` / ``dial_failed`` / platform, and the participant is removed in case
the phone is still ringing.

Nothing here logs the trunk password; numbers are masked in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

import aiohttp
from google.protobuf.duration_pb2 import Duration
from livekit import api
from livekit.protocol.sip import CreateSIPParticipantRequest, SIPOutboundConfig

from convoi.definitions.models import PhoneNumber
from convoi.telephony.outcomes import REQUEST_TERMINATED, DialOutcome, dial_outcome
from convoi.telephony.trunk import mask_number, sip_transport, trunk_password

__all__ = [
    "DIAL_REQUEST_MARGIN",
    "HANG_UP_TIMEOUT",
    "RING_TIMEOUT_TOLERANCE",
    "DialResult",
    "Dialer",
    "build_request",
    "dial",
    "hang_up",
]

log = logging.getLogger("convoi.telephony")

DIAL_REQUEST_MARGIN: Final[float] = 10.0
"""Seconds the dial request may take beyond ``ringing_timeout`` before we give up on LiveKit."""
RING_TIMEOUT_TOLERANCE: Final[float] = 0.25
"""A failure arriving this close to (or after) ``ringing_timeout`` counts as our ring timeout."""
HANG_UP_TIMEOUT: Final[float] = 5.0
"""Bound on the best-effort hang-up after a cancelled or timed-out dial."""

_TIMEOUT_CODES: Final[frozenset[str]] = frozenset({"canceled", "deadline_exceeded"})


@dataclass(frozen=True, slots=True)
class DialResult:
    """The result of dialling: answered, or the outcome that ends the call."""

    answered: bool
    outcome: DialOutcome | None
    """``None`` when answered; otherwise why the call did not connect."""
    participant_identity: str
    sip_call_id: str | None
    """LiveKit's SIP call id (``SCL_…``) when the server returned one."""
    answered_at: float | None
    """Unix time of the answer (``None`` when not answered)."""


class Dialer(Protocol):
    """A dialer: :func:`dial` (unit tests pass fakes with the same signature)."""

    async def __call__(
        self,
        lk: api.LiveKitAPI,
        *,
        phone: PhoneNumber,
        to_number: str,
        room: str,
        identity: str,
        display_name: str | None,
        ringing_timeout: float,
        max_call_duration: float | None,
    ) -> DialResult: ...


def _duration(seconds: float) -> Duration:
    whole = int(seconds)
    return Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def build_request(
    *,
    phone: PhoneNumber,
    to_number: str,
    room: str,
    identity: str,
    display_name: str | None,
    ringing_timeout: float,
    max_call_duration: float | None,
    env: Mapping[str, str] | None = None,
) -> CreateSIPParticipantRequest:
    """The exact ``CreateSIPParticipantRequest`` :func:`dial` sends (see the module docstring).

    Raises :class:`~convoi.telephony.trunk.TrunkConfigError` when the trunk's password variable
    is unset, and ``ValueError`` for a non-positive ``ringing_timeout``.
    """
    if ringing_timeout <= 0:
        raise ValueError(f"ringing_timeout must be positive, got {ringing_timeout}")
    sip = phone.sip
    trunk: SIPOutboundConfig | None = None
    if not sip.trunk_id:
        auth = trunk_password(phone, env)
        trunk = SIPOutboundConfig(
            hostname=sip.address,
            transport=sip_transport(sip.transport),
            auth_username=auth[0] if auth else "",
            auth_password=auth[1] if auth else "",
        )
    request = CreateSIPParticipantRequest(
        sip_trunk_id=sip.trunk_id or "",
        trunk=trunk,
        sip_call_to=to_number,
        sip_number=phone.number,
        room_name=room,
        participant_identity=identity,
        participant_name=display_name or "",
        wait_until_answered=True,
        ringing_timeout=_duration(ringing_timeout),
        play_dialtone=False,
    )
    if max_call_duration is not None and max_call_duration > 0:
        request.max_call_duration.CopyFrom(_duration(max_call_duration))
    return request


async def dial(
    lk: api.LiveKitAPI,
    *,
    phone: PhoneNumber,
    to_number: str,
    room: str,
    identity: str,
    display_name: str | None,
    ringing_timeout: float,
    max_call_duration: float | None,
    env: Mapping[str, str] | None = None,
) -> DialResult:
    """Call ``to_number`` from ``phone`` into ``room`` as ``identity`` and wait for the answer.

    Returns ``DialResult(answered=True, ...)`` once the callee picked up, else
    ``answered=False`` with the :class:`DialOutcome`. See the module docstring for what raises.
    ``env`` (default ``os.environ``) is where the trunk password variable is read.
    """
    request = build_request(
        phone=phone,
        to_number=to_number,
        room=room,
        identity=identity,
        display_name=display_name,
        ringing_timeout=ringing_timeout,
        max_call_duration=max_call_duration,
        env=env,
    )
    via = f"trunk {phone.sip.trunk_id}" if phone.sip.trunk_id else f"inline {phone.sip.address}"
    log.info(
        "dialing %s from %s via %s (room %s, ringing %.0fs)",
        mask_number(to_number),
        phone.number,
        via,
        room,
        ringing_timeout,
    )
    bound = ringing_timeout + DIAL_REQUEST_MARGIN
    started = time.monotonic()
    try:
        async with asyncio.timeout(bound + 1.0):
            info = await lk.sip.create_sip_participant(request, timeout=bound)
    except asyncio.CancelledError:
        await _hang_up_quietly(lk, room, identity)
        raise
    except api.SipCallError as e:
        timed_out = _near_ring_timeout(started, ringing_timeout)
        log.info("dial to %s: LiveKit answered %s", mask_number(to_number), e)
        code = e.sip_status_code
        # with a SIP code the detail is "SIP <code> <phrase>" (+ the carrier's own phrase when it
        # differs); the twirp message would only repeat the code
        text = e.sip_status or ("" if code is not None else e.message)
        if code is None:
            timed_out = timed_out and e.code in _TIMEOUT_CODES
        elif code != REQUEST_TERMINATED:
            timed_out = False
        outcome = dial_outcome(code, timed_out=timed_out, message=text)
    except api.TwirpError as e:
        timed_out = e.code in _TIMEOUT_CODES and _near_ring_timeout(started, ringing_timeout)
        outcome = dial_outcome(None, timed_out=timed_out, message=_server_text(e))
    except TimeoutError:  # our bound (asyncio / aiohttp total timeout): LiveKit never answered
        await _hang_up_quietly(lk, room, identity)
        outcome = dial_outcome(
            None,
            timed_out=False,
            message=f"LiveKit did not answer the dial request within {bound:.0f}s "
            f"(ringing timeout {ringing_timeout:.0f}s)",
        )
    except aiohttp.ClientError as e:
        outcome = dial_outcome(
            None, timed_out=False, message=f"cannot reach LiveKit: {type(e).__name__}: {e}"
        )
    else:
        log.info("answered %s (sip call %s)", mask_number(to_number), info.sip_call_id or "?")
        return DialResult(
            answered=True,
            outcome=None,
            participant_identity=info.participant_identity or identity,
            sip_call_id=info.sip_call_id or None,
            answered_at=time.time(),
        )
    log.info(
        "dial to %s ended: %s/%s (%s) after %.1fs",
        mask_number(to_number),
        outcome.status,
        outcome.fault,
        outcome.detail,
        time.monotonic() - started,
    )
    return DialResult(
        answered=False,
        outcome=outcome,
        participant_identity=identity,
        sip_call_id=None,
        answered_at=None,
    )


async def hang_up(lk: api.LiveKitAPI, room: str, identity: str) -> bool:
    """Remove the SIP participant ``identity`` from ``room`` (which hangs up the phone leg).

    Returns ``True`` when it was removed, ``False`` when it (or the room) was already gone
    (livekit-server answers ``not_found`` "participant does not exist"). Other errors raise.
    """
    try:
        await lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))
    except api.TwirpError as e:
        if e.code == "not_found" or e.status == 404:
            return False
        raise
    return True


async def _hang_up_quietly(lk: api.LiveKitAPI, room: str, identity: str) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(HANG_UP_TIMEOUT):
            await asyncio.shield(hang_up(lk, room, identity))


def _near_ring_timeout(started: float, ringing_timeout: float) -> bool:
    return time.monotonic() - started >= ringing_timeout - RING_TIMEOUT_TOLERANCE


def _server_text(e: api.TwirpError) -> str:
    return f"{e.message} (LiveKit {e.code}, HTTP {e.status})"
