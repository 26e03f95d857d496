"""Warm transfer on livekit-agents' ``WarmTransferTask``, bridged by the worker.

``WarmTransferTask`` (``livekit.agents.beta.workflows``) is used as it ships: awaited inside the
agent's tool, it puts the caller on hold (hold music, the caller's session input and output
off), opens a side room ``<room>-human-agent``, starts a second AgentSession there with the
call's STT/LLM/TTS and the conversation so far in its instructions, dials the destination into
it with ``CreateSIPParticipant`` (``wait_until_answered``), lets the person speak first and
briefs them; when they agree the briefing LLM calls ``connect_to_caller``. A human who does not
answer, declines, hangs up or is voicemail completes the task with a ``ToolError``: the caller's
session resumes and the agent tells the caller.

One step does not work against the open-source livekit-server: ``connect_to_caller`` moves the
human's SIP participant into the caller's room with ``MoveParticipant``, which livekit-server
v1.13.5 answers "not implemented". :class:`BridgingWarmTransferTask` replaces just that step
(``_merge_calls``) with an :class:`~convoi.worker.bridge.AudioBridge` between the two rooms and
keeps the side room alive when the briefing session closes (it would delete it, hanging the
human up). Everything else is livekit's code.

:func:`warm_origination` picks how to dial: an E.164 destination goes out through the call's
own phone number (its provisioned trunk, or the same inline trunk the dialer builds, caller id
our number); a ``sip:user@host`` destination is dialled directly at ``host`` (same transport,
no trunk credentials: they belong to the carrier, not to that host).
"""

from __future__ import annotations

import re
from typing import Any

from livekit import api
from livekit.agents.beta.workflows import WarmTransferTask
from livekit.protocol.sip import SIPOutboundConfig

from convoi.definitions.models import PhoneNumber
from convoi.telephony import dial_outcome
from convoi.telephony.dialer import build_request
from convoi.telephony.trunk import sip_transport
from convoi.worker.bridge import AudioBridge, Leg

__all__ = ["BRIEFING_TURN_HANDLING", "BridgingWarmTransferTask", "sip_failure", "warm_origination"]

BRIEFING_TURN_HANDLING: dict[str, Any] = {"turn_detection": "vad", "interruption": {"mode": "vad"}}
"""The briefing session's turns end on the local VAD (livekit's default interruption mode,
"adaptive", would ask LiveKit Cloud)."""

_SIP_URI = re.compile(r"^sips?:(?P<user>[^@\s]+)@(?P<host>[^;\s>]+)")


def sip_failure(exc: api.SipCallError) -> str:
    """``SIP 486 Busy Here``-style text for a failed dial or REFER."""
    if exc.sip_status_code is None:
        return f"{exc.code}: {exc.message}"[:200]
    return dial_outcome(exc.sip_status_code, timed_out=False, message=exc.sip_status or "").detail


def warm_origination(
    destination: str, phone: PhoneNumber, ringing_timeout: float
) -> dict[str, Any]:
    """``WarmTransferTask`` keyword arguments dialling ``destination`` from ``phone``."""
    if destination.startswith("+"):
        request = build_request(
            phone=phone,
            to_number=destination,
            room="unused",
            identity="unused",
            display_name=None,
            ringing_timeout=ringing_timeout,
            max_call_duration=None,
        )
        origination: dict[str, Any] = {"sip_call_to": destination, "sip_number": phone.number}
        if request.sip_trunk_id:
            return {**origination, "sip_trunk_id": request.sip_trunk_id}
        return {**origination, "sip_connection": request.trunk}
    match = _SIP_URI.match(destination)
    if match is None:
        raise ValueError(f"not a SIP URI: {destination!r}")
    connection = SIPOutboundConfig(
        hostname=match["host"], transport=sip_transport(phone.sip.transport)
    )
    return {
        "sip_call_to": match["user"],
        "sip_number": phone.number,
        "sip_connection": connection,
    }


class BridgingWarmTransferTask(WarmTransferTask):
    """``WarmTransferTask`` whose ``connect_to_caller`` bridges the rooms (see the module).

    ``caller_identity`` is the caller's participant in the job's room. After a successful
    transfer :attr:`bridge` carries the audio; :attr:`dial_error` tells why dialling failed."""

    def __init__(self, *, caller_identity: str, **kwargs: Any) -> None:
        kwargs.setdefault("turn_handling", BRIEFING_TURN_HANDLING)
        super().__init__(**kwargs)
        self._caller_identity = caller_identity
        self.bridge: AudioBridge | None = None
        self.dial_error: str | None = None

    async def _originate_human_agent(self, *, room_name: str, identity: str, room: Any) -> None:
        try:
            await super()._originate_human_agent(room_name=room_name, identity=identity, room=room)
        except api.SipCallError as exc:
            self.dial_error = sip_failure(exc)
            raise

    async def _merge_calls(self) -> None:
        assert self._caller_room is not None and self._human_agent_sess is not None
        room_io = self._human_agent_sess.room_io
        human_room = room_io.room
        human_room.off("disconnected", self._on_human_agent_room_close)
        # the briefing session is shut down next; it must leave the side room (and the human
        # in it) standing: the bridge owns it from here
        room_io._options.delete_room_on_close = False
        bridge = AudioBridge(
            Leg(self._caller_room, self._caller_identity),
            Leg(human_room, self._human_agent_identity),
        )
        await bridge.start()
        self.bridge = bridge
