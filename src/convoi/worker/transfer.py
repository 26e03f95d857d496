"""Transferring a phone call's caller to someone else: :class:`TransferDesk`, one per call.

- **Cold**: ``JobContext.transfer_sip_participant`` (livekit-server → livekit-sip) sends a SIP
  REFER on the caller's leg with ``Refer-To`` the destination (``tel:+1…`` for an E.164 number,
  the ``sip:`` URI as written). livekit-sip answers once the far end accepted the REFER (202)
  *and* reported the new call up (``NOTIFY`` with a ``message/sipfrag`` ``SIP/2.0 200 OK``
  body); a rejected REFER (e.g. 403) or a failed NOTIFY raises with the SIP status. It then
  hangs our leg up (BYE) within a second, unless the far end did already.
- **Warm**: livekit-agents' ``WarmTransferTask`` (see :mod:`convoi.worker.warm_transfer`): the
  agent dials the destination into a side room, briefs the person who answers, and on their
  ``connect_to_caller`` the two phone legs are bridged; our agent leaves the conversation.

The desk runs each request in its own task, so that a caller leaving mid-transfer (livekit-sip
hangs the leg up right after a successful REFER; carriers often hang up first) does not cancel
it: the call's end asks :meth:`TransferDesk.settled` whether the caller left *because* the
transfer succeeded. Every outcome becomes a :class:`~convoi.reporting.events.TransferReport`;
a failure leaves the call running. Logs carry the destination's name, never the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from livekit import api, rtc
from livekit.agents import AgentSession, llm
from livekit.agents.llm.tool_context import ToolError
from livekit.protocol.sip import (
    SIPTransferReason,
    SIPTransferStatus,
    TransferSIPParticipantResponse,
)

from convoi.definitions.models import PhoneNumber, TransferDestination
from convoi.reporting.events import TransferReport
from convoi.worker.bridge import AudioBridge
from convoi.worker.log import logger
from convoi.worker.warm_transfer import BridgingWarmTransferTask, sip_failure, warm_origination

__all__ = [
    "SETTLE_TIMEOUT",
    "SIDE_ROOM_SUFFIX",
    "TRANSFER_TIMEOUT",
    "TransferDesk",
    "TransferJob",
    "describe_error",
    "refer_target",
]

TRANSFER_TIMEOUT = 45.0
"""Bound on a cold transfer (REFER answered and the new call reported up)."""
SIDE_ROOM_SUFFIX = "-human-agent"
"""``WarmTransferTask`` briefs the human in the room named after the call's plus this."""
SETTLE_TIMEOUT = 10.0
"""How long the end of a call whose caller left waits for a transfer in flight to conclude."""


class TransferJob(Protocol):
    """What a transfer uses of livekit's ``JobContext``."""

    @property
    def api(self) -> api.LiveKitAPI: ...

    @property
    def room(self) -> rtc.Room: ...

    def transfer_sip_participant(
        self, participant: Any, transfer_to: str, play_dialtone: bool = False
    ) -> asyncio.Future[Any]: ...


def refer_target(destination: str) -> str:
    """The ``transfer_to`` livekit expects: ``tel:+1…`` for E.164, a SIP URI unchanged."""
    return f"tel:{destination}" if destination.startswith("+") else destination


def describe_error(exc: BaseException) -> str:
    """A short, log-safe reason a transfer failed (``SIP 403 Forbidden``, ``timed out``…)."""
    if isinstance(exc, api.SipCallError):
        return sip_failure(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ToolError):
        return exc.message
    if isinstance(exc, api.ServerError):
        return f"{exc.code}: {exc.message}"[:200]
    return type(exc).__name__


class TransferDesk:
    """The transfers of one phone call (``clock`` gives the report's ``at``)."""

    def __init__(
        self, job: TransferJob, *, clock: Callable[[], float], log_fields: dict[str, Any]
    ) -> None:
        self._job = job
        self._clock = clock
        self._fields = log_fields
        self._in_flight: asyncio.Task[TransferReport] | None = None
        self._bridge: AudioBridge | None = None
        self._warm: BridgingWarmTransferTask | None = None

    @property
    def in_flight(self) -> bool:
        """A transfer was asked for and has not concluded yet."""
        cold = self._in_flight is not None and not self._in_flight.done()
        return cold or (self._warm is not None and not self._warm.done())

    async def cold(self, destination: TransferDestination, *, caller: str) -> TransferReport:
        """REFER the caller's leg (participant ``caller``) to ``destination``."""
        return await self._run(self._cold(destination, caller, self._clock()))

    async def warm(
        self,
        destination: TransferDestination,
        *,
        session: AgentSession[Any],
        phone: PhoneNumber,
        caller: str,
        summary: str | None,
        ringing_timeout: float,
    ) -> TransferReport:
        """Brief a person at ``destination``, then bridge them with the caller.

        Must be awaited inside the agent's tool (``WarmTransferTask`` takes over the session
        while it runs); on success the bridge stays up until :meth:`hold` ends it."""
        at = self._clock()
        agent = session.current_agent
        task = BridgingWarmTransferTask(
            caller_identity=caller,
            chat_ctx=agent.chat_ctx,
            extra_instructions=f"The assistant's own summary: {summary}" if summary else "",
            stt=agent.stt if agent.stt is not None else session.stt,
            llm=agent.llm if isinstance(agent.llm, llm.LLM) else session.llm,
            tts=agent.tts if agent.tts is not None else session.tts,
            vad=session.vad,
            ringing_timeout=ringing_timeout,
            **warm_origination(destination.destination, phone, ringing_timeout),
        )
        self._warm = task
        try:
            await task
        except Exception as exc:  # ToolError: not answered, declined, hung up, voicemail
            return self._report(destination, at, task.dial_error or describe_error(exc))
        self._bridge = task.bridge
        return self._report(destination, at, None)

    async def settled(self) -> bool:
        """True when a transfer in flight (if any) ends in success (waits up to
        :data:`SETTLE_TIMEOUT`)."""
        task = self._in_flight
        if task is None:
            return False
        with contextlib.suppress(TimeoutError):
            report = await asyncio.wait_for(asyncio.shield(task), timeout=SETTLE_TIMEOUT)
            return report.succeeded
        return False

    async def hold(self, timeout: float) -> None:
        """After a warm transfer: keep the two legs bridged until one hangs up (at most
        ``timeout`` s), then hang the other up. Returns at once without a bridge."""
        bridge, self._bridge = self._bridge, None
        if bridge is None:
            if self._warm is not None and not self._warm.done():  # the caller left mid-briefing
                await self._delete_side_room()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(bridge.wait(), timeout=timeout)
        await bridge.aclose(self._job.api)

    async def _delete_side_room(self) -> None:
        room = self._job.room.name + SIDE_ROOM_SUFFIX
        try:
            request = api.DeleteRoomRequest(room=room)
            await asyncio.wait_for(self._job.api.room.delete_room(request), timeout=5.0)
        except Exception as exc:
            logger.warning(
                "could not delete the transfer's side room: %s",
                type(exc).__name__,
                extra=self._fields,
            )

    async def _run(self, work: Any) -> TransferReport:
        self._in_flight = asyncio.ensure_future(work)
        return await asyncio.shield(self._in_flight)

    async def _cold(
        self, destination: TransferDestination, caller: str, at: float
    ) -> TransferReport:
        target = refer_target(destination.destination)
        try:
            async with asyncio.timeout(TRANSFER_TIMEOUT):
                response = await self._job.transfer_sip_participant(caller, target)
        except Exception as exc:
            return self._report(destination, at, describe_error(exc))
        if (
            isinstance(response, TransferSIPParticipantResponse)
            and response.status == SIPTransferStatus.STS_TRANSFER_FAILED
        ):  # newer servers report some failures in the answer rather than as an error
            reason = SIPTransferReason.Name(response.reason) if response.reason else None
            return self._report(destination, at, reason or "transfer failed")
        return self._report(destination, at, None)

    def _report(
        self, destination: TransferDestination, at: float, error: str | None
    ) -> TransferReport:
        logger.info(
            "transfer succeeded" if error is None else "transfer failed",
            extra={
                **self._fields,
                "transfer": destination.name,
                "mode": destination.mode,
                "error": error,
            },
        )
        return TransferReport(
            destination=destination.destination,
            name=destination.name,
            mode=destination.mode,
            at=at,
            succeeded=error is None,
            error=error,
        )
