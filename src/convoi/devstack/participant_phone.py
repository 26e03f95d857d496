"""DEVSTACK / TEST STAND-IN for the SIP leg: a LiveKit participant plays "the phone".

livekit-sip cannot be built on the development machine, so no ``CreateSIPParticipant`` can
succeed there. With the worker setting ``CONVOI_DIAL_MODE=participant`` the worker calls
:func:`dial_participant_stand_in` instead of :func:`convoi.telephony.dial`: nothing is
dialled; it waits up to ``ringing_timeout`` for a participant with identity
``phone-<E.164 digits>`` (e.g. ``phone-15550000002``, see :func:`convoi.telephony.phone_identity`)
to join ``room`` and treats that join as the answer. The end-to-end tests' simulated caller joins
under that identity. Nobody joining gives the same ``no_answer`` outcome a ring timeout gives.

It polls ``RoomService.ListParticipants`` every :data:`POLL_INTERVAL` seconds (a room that does
not exist yet counts as empty). Never use it in production: it places no call.

Production code does not import this module. :mod:`convoi.telephony` knows only the ``sip``
dialer; the process that wants the participant mode calls :func:`register` once (in every process
that dials), after which ``convoi.telephony.dialer_for("participant")`` returns
:func:`dial_participant_stand_in`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import aiohttp
from livekit import api
from livekit.protocol.models import ParticipantInfo

from convoi.definitions.models import PhoneNumber
from convoi.telephony import DialOutcome, DialResult, dial_outcome, phone_identity, register_dialer

__all__ = ["DIAL_MODE", "POLL_INTERVAL", "dial_participant_stand_in", "register"]

DIAL_MODE: Final[str] = "participant"
"""The ``CONVOI_DIAL_MODE`` value this module serves."""
POLL_INTERVAL: Final[float] = 0.2
_REQUEST_TIMEOUT: Final[float] = 5.0


async def dial_participant_stand_in(
    lk: api.LiveKitAPI,
    *,
    phone: PhoneNumber,
    to_number: str,
    room: str,
    identity: str,
    display_name: str | None,
    ringing_timeout: float,
    max_call_duration: float | None,
) -> DialResult:
    """Wait for ``phone-<digits of to_number>`` to join ``room``; same API as ``dial()``.

    ``phone``, ``identity``, ``display_name`` and ``max_call_duration`` are accepted for parity
    and not used: the participant's own identity is what counts. Returns answered with
    ``sip_call_id=None``, ``no_answer`` after ``ringing_timeout``, or ``failed``/platform if
    LiveKit cannot be asked.
    """
    del phone, identity, display_name, max_call_duration
    if ringing_timeout <= 0:
        raise ValueError(f"ringing_timeout must be positive, got {ringing_timeout}")
    expected = phone_identity(to_number)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ringing_timeout
    while True:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                present = await _joined(lk, room, expected)
        except (api.TwirpError, aiohttp.ClientError, TimeoutError) as e:
            text = f"participant stand-in could not list participants: {type(e).__name__}: {e}"
            return _not_answered(expected, dial_outcome(None, timed_out=False, message=text))
        if present:
            return DialResult(
                answered=True,
                outcome=None,
                participant_identity=expected,
                sip_call_id=None,
                answered_at=time.time(),
            )
        remaining = deadline - loop.time()
        if remaining <= 0:
            text = f"no answer within {ringing_timeout:g}s ({expected} never joined; stand-in)"
            return _not_answered(expected, dial_outcome(None, timed_out=True, message=text))
        await asyncio.sleep(min(POLL_INTERVAL, remaining))


async def _joined(lk: api.LiveKitAPI, room: str, identity: str) -> bool:
    try:
        resp = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    except api.TwirpError as e:
        if e.code == "not_found" or e.status == 404:
            return False
        raise
    return any(
        p.identity == identity and p.state != ParticipantInfo.State.DISCONNECTED
        for p in resp.participants
    )


def _not_answered(identity: str, outcome: DialOutcome) -> DialResult:
    return DialResult(
        answered=False,
        outcome=outcome,
        participant_identity=identity,
        sip_call_id=None,
        answered_at=None,
    )


def register() -> None:
    """Make :data:`DIAL_MODE` (``participant``) a dial mode: ``dialer_for("participant")`` returns
    :func:`dial_participant_stand_in` from now on, in this process. Calling it again is harmless."""
    register_dialer(DIAL_MODE, dial_participant_stand_in)
