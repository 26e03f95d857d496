"""One call, one owner: :class:`Call` conducts a dispatched call and ends it exactly once.

A job's call goes: read the CallSpec → resolve it against the definitions and build the session →
connect → ring the customer (phone) or wait for the browser (web) → converse → end. Whatever ends
it — the caller leaving, the agent's ``end_call`` tool, a dial outcome, the participant never
joining, an invalid CallSpec, a provider error, the job shutting down — goes through
:meth:`Call.end`. The first reason wins (like ``AgentSession._close_soon``); the end runs once:

1. close the session (drained when the agent hung up, so its goodbye is heard);
2. record the terminal transition in the lifecycle (:class:`~convoi.lifecycle.CallLifecycle`,
   held by the reporter, the only holder of status and ended_reason) and commit ``call.status``
   and ``call.ended`` (transcript, handoffs, usage, cost, latency) to the outbox;
3. log ``call ended`` (no transcript: customer speech stays out of operational logs);
4. flush delivery for a few seconds (the rest stays in the outbox for the worker to send);
5. delete the room when our side ended the call, and shut the job down.

The session's agents reach the call through :class:`~convoi.agent.CallControls` (the session's
userdata): they count STT audio, take the pre-rendered greeting, ask to hang up and, on phone
calls, to transfer the caller (:mod:`convoi.worker.transfer`; a successful transfer ends the
call ``transferred``; after a warm one the job keeps the two legs bridged until one hangs up).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from livekit import api, rtc
from livekit.agents import AgentSession, ToolError, llm, room_io, tts
from livekit.agents.voice.events import AgentStateChangedEvent, CloseEvent, CloseReason
from pydantic import TypeAdapter

from convoi.agent import CallControls, ConvoiAgent, TransferOutcome
from convoi.callspec import CallSpecError, ResolvedCall, resolve_call
from convoi.definitions.ids import CallId
from convoi.definitions.models import TransferDestination
from convoi.knowledge.retrieval import Retrieval
from convoi.lifecycle import EndedReason, Fault, TerminalStatus
from convoi.pipeline.factory import (
    INPUT_SAMPLE_RATE,
    PipelineError,
    build_pipeline,
    serving_model,
)
from convoi.reporting.channel import ReportingChannel
from convoi.reporting.checkpoint import Resume
from convoi.reporting.events import (
    CallEvent,
    Checkpoint,
    TransferReport,
    UsageEntry,
    VoicemailReport,
)
from convoi.reporting.reporter import CallReporter, ReportingError
from convoi.reporting.usage import UsageTracker
from convoi.squads import SquadRuntime
from convoi.telephony import DialOutcome
from convoi.worker import metrics
from convoi.worker.apology import ProviderFaults
from convoi.worker.config import JobResources
from convoi.worker.dtmf import KeypadInput, publish_keys
from convoi.worker.early_audio import EarlyAudioTrack
from convoi.worker.greeting_audio import GreetingRender
from convoi.worker.limits import LimitsWatch
from convoi.worker.log import logger
from convoi.worker.phone import dial_customer
from convoi.worker.presence import (
    LOST_CONNECTION,
    PHONE_LOST_CONNECTION,
    CallerPresence,
    phone_disconnect_reason,
)
from convoi.worker.recording import TranscriptRecorder
from convoi.worker.remote_end import RemoteEnd
from convoi.worker.resume import (
    CALLER_PRESENT_TIMEOUT,
    CheckpointTrigger,
    current_checkpoint,
    find_caller,
    restore_agent,
    restored_transcript,
    usage_after,
)
from convoi.worker.session import BuiltSession, PipelineFactory, build_session
from convoi.worker.transfer import TransferDesk
from convoi.worker.turn_timing import attach as attach_turn_timing
from convoi.worker.turn_timing import mark
from convoi.worker.voicemail import VoicemailDetection, detection_for

__all__ = [
    "SESSION_CLOSE_TIMEOUT",
    "Call",
    "JobHandle",
    "SessionStarter",
    "close_reason_to_ended_reason",
]

SESSION_CLOSE_TIMEOUT = 30.0
"""Bound on closing the session at the end of a call (a drained goodbye included)."""
DELIVERY_FLUSH_TIMEOUT = 10.0
"""Seconds the end of a call waits for its events to be delivered (the rest stays in the outbox)."""

_CALL_ID = TypeAdapter(CallId)


class JobHandle(Protocol):
    """What a call uses of livekit's ``JobContext`` (unit tests pass a fake)."""

    @property
    def api(self) -> api.LiveKitAPI: ...

    @property
    def room(self) -> rtc.Room: ...

    log_context_fields: dict[str, Any]
    """Fields livekit-agents adds to every log record of the job process."""

    def is_fake_job(self) -> bool: ...

    async def connect(self) -> None: ...

    async def wait_for_participant(
        self, *, identity: str | None = None, kind: list[rtc.ParticipantKind.ValueType]
    ) -> rtc.RemoteParticipant: ...

    def delete_room(self, room_name: str | None = None) -> asyncio.Future[Any]: ...

    def shutdown(self, reason: str = "user requested") -> None: ...

    def add_shutdown_callback(
        self, callback: Callable[[str], Coroutine[None, None, None]]
    ) -> None: ...

    def transfer_sip_participant(
        self, participant: Any, transfer_to: str, play_dialtone: bool = False
    ) -> asyncio.Future[Any]: ...


SessionStarter = Callable[[AgentSession[CallControls], ConvoiAgent, str | None], Awaitable[None]]
"""Starts the call's session with the caller (their participant identity; None in console mode).
The worker's starts it in the job's room; unit tests start it in text mode."""


@dataclass(frozen=True)
class _EndRequest:
    reason: EndedReason
    status: TerminalStatus | None
    fault: Fault | None
    detail: str | None
    at: float | None
    drain: bool


def close_reason_to_ended_reason(event: CloseEvent) -> EndedReason:
    """Why a call ends when its session closed without the call asking it to."""
    if event.reason == CloseReason.PARTICIPANT_DISCONNECTED:
        return "customer_hangup"
    if event.reason == CloseReason.ERROR:
        return "provider_error" if event.error is not None else "worker_error"
    if event.reason in (CloseReason.JOB_SHUTDOWN, CloseReason.USER_INITIATED):
        # our own hang-ups are decided before the session closes: a user-initiated close the
        # call did not ask for is livekit closing the session because the job is shutting down
        return "worker_shutdown"
    return "agent_hangup"  # task_completed: the agent finished its task


class Call(CallControls):
    """A dispatched call, from its CallSpec to its ``call.ended`` event.

    ``metadata`` is the dispatch metadata (CallSpec JSON). Use :meth:`run` once; :meth:`end`
    (or :meth:`end_soon` from synchronous code) from anywhere, any number of times.
    """

    def __init__(
        self,
        job: JobHandle,
        metadata: str,
        resources: JobResources,
        *,
        log_fields: dict[str, Any] | None = None,
        pipeline_factory: PipelineFactory = build_pipeline,
        start_session: SessionStarter | None = None,
        clock: Callable[[], float] = time.time,
        resume: Resume | None = None,
    ) -> None:
        self._job = job
        self._resume = resume  # this job resumes a call another job conducted (worker/resume.py)
        self._start = start_session or self._start_in_room
        self._metadata = metadata
        self._resources = resources
        self._pipeline_factory = pipeline_factory
        self._clock = clock
        self._peek = _peek(metadata)
        self.call_id = _valid_call_id(self._peek.get("call_id"))
        """The CallSpec's call id (None when it has no valid one: such a call cannot be reported)."""
        self.log_fields: dict[str, Any] = {**(log_fields or {}), "call_id": self.call_id}
        """job_id, room and call_id: on every log line of the job from here on."""
        job.log_context_fields = self.log_fields
        self._channel = ReportingChannel(resources.config.delivery)
        self.resolved: ResolvedCall | None = None
        self._built: BuiltSession | None = None
        self._usage: UsageTracker | None = None
        self._recorder: TranscriptRecorder | None = None
        self._limits: LimitsWatch | None = None
        self._faults: ProviderFaults | None = None
        self._detection: VoicemailDetection | None = None
        self._keypad: KeypadInput | None = None
        self._presence: CallerPresence | None = None
        self._remote_end: RemoteEnd | None = None
        self._greeting_audio: AsyncIterator[rtc.AudioFrame] | None = None
        self._early_audio: EarlyAudioTrack | None = None
        self._caller: str | None = None
        self._caller_left_at: float | None = None
        self._session_started = False
        self._session_closed = asyncio.Event()
        self._greeted = False
        self._ending: asyncio.Task[CallEvent | None] | None = None
        self.transfer: TransferReport | None = None
        """The call's (last) transfer, for ``call.ended``."""
        self._transfers = TransferDesk(job, clock=clock, log_fields=self.log_fields)
        self.voicemail: VoicemailReport | None = None
        """What answering-machine detection decided, for ``call.ended``."""
        self.reporter: CallReporter | None = self._new_reporter(resources, clock)
        """Reports the lifecycle (None for a call without a valid call_id)."""
        self._checkpoints = self._checkpoint_trigger()

    # -- the call's life -------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """True once the call's end has been decided (it may still be being reported)."""
        return self._ending is not None

    async def run(self) -> None:
        """Conduct the call until its session is running (or the call has ended).

        Never raises for a problem of the call itself: an invalid CallSpec, a provider
        configuration problem or an unexpected error ends the call (``failed``) instead."""
        self._job.add_shutdown_callback(self._on_job_shutdown)
        self._channel.start()
        try:
            if self.reporter is not None and self._resume is not None:
                await self._resume_reporting(self.reporter, self._resume)
            elif self.reporter is not None:
                await self.reporter.initiated()
            try:
                self.resolved = resolve_call(self._metadata, self._resources.definitions)
                self._built = build_session(
                    self.resolved,
                    self._resources.config.settings,
                    vad=self._resources.vad,
                    controls=self,
                    pipeline_factory=self._pipeline_factory,
                )
            except (CallSpecError, PipelineError) as exc:
                await self._reject(exc)
                return
            self._attach(self.resolved, self._built)
            if self._resume is not None:
                self._built = await self._restore(self._resume, self._built)
            await self._converse(self.resolved, self._built)
        except Exception as exc:
            logger.exception("call failed", extra=self.log_fields)
            await self.end("worker_error", detail=f"{type(exc).__name__} in the worker")

    async def _converse(self, call: ResolvedCall, built: BuiltSession) -> None:
        """Connect, reach the caller, then hand the conversation to the session."""
        if self._job.is_fake_job():  # console: the terminal is the caller
            await self._start_session(built, None)
            return
        web = call.spec.type == "web" and self._resume is None
        greeting = self._render_greeting(call, built) if web else None  # while the room connects
        try:
            await self._job.connect()
            mark("connected")
        except BaseException:
            if greeting is not None:
                greeting.cancel()
            raise
        if self._start == self._start_in_room:  # a real room (tests start text sessions)
            self._early_audio = EarlyAudioTrack(self._job.room)
        if self.call_id is not None:  # the hang-up API (worker/remote_end.py)
            self._remote_end = RemoteEnd(
                self._job.room, self.call_id, self._on_api_hangup, log_fields=self.log_fields
            )
            self._remote_end.start()
        logger.info(
            "call accepted",
            extra={
                **self.log_fields,
                "type": call.spec.type,
                "agent": call.start_agent.agent.id,
                "squad": call.squad.id if call.squad else None,
            },
        )
        if self._resume is not None:
            identity = await self._find_resumed_caller()
        elif call.spec.type == "outbound_phone":
            identity = await self._dial(call, built)
        else:
            identity = await self._wait_for_web_participant(call, greeting)
        if identity is not None and not self.ended:
            await self._start_session(built, identity)

    async def _dial(self, call: ResolvedCall, built: BuiltSession) -> str | None:
        """Ring the customer: their participant identity once answered, else None (ended)."""
        assert self.reporter is not None  # a resolved call has a valid call_id
        await self.reporter.ringing()
        result = await dial_customer(
            self._job.api,
            call,
            room=self._job.room.name,
            dialer=self._resources.config.dialer,
            greeting_tts=built.agent.tts if isinstance(built.agent.tts, tts.TTS) else None,
            log_fields=self.log_fields,
        )
        if isinstance(result, DialOutcome):
            await self.end(
                result.ended_reason, status=result.status, fault=result.fault, detail=result.detail
            )
            return None
        self._greeting_audio = result.greeting_audio
        if result.greeting_characters and self._usage is not None:
            self._usage.add_tts_characters(call.start, result.greeting_characters)
        self._detection = detection_for(
            call,
            built.session,
            built.agent.llm,
            identity=result.identity,
            answered_at=result.answered_at or self._clock(),
            end_soon=self.end_soon,
            on_report=self._on_voicemail_report,
            log_fields=self.log_fields,
        )
        return result.identity

    def _render_greeting(self, call: ResolvedCall, built: BuiltSession) -> GreetingRender:
        """Start synthesising the start member's greeting (see worker/greeting_audio.py)."""
        engine = built.agent.tts if isinstance(built.agent.tts, tts.TTS) else None
        return GreetingRender(engine, call.start_agent.greeting)

    async def _wait_for_web_participant(
        self, call: ResolvedCall, greeting: GreetingRender | None
    ) -> str | None:
        """The browser participant's identity, or None (ended) if it never joins; by then the
        ``greeting`` (synthesised while the room connected and the browser joined) is ready."""
        greeting = greeting or GreetingRender(None, None)
        try:
            participant = await asyncio.wait_for(
                self._job.wait_for_participant(
                    kind=[rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD]
                ),
                timeout=self._resources.config.settings.web_join_timeout_seconds,
            )
        except TimeoutError:
            logger.warning("participant never joined", extra=self.log_fields)
            greeting.cancel()
            await self.end("participant_never_joined")
            return None
        except BaseException:
            greeting.cancel()
            raise
        mark("participant")
        self._greeting_audio = await greeting.collect(self.log_fields)
        mark("greeting_ready")
        if self._greeting_audio and self._usage is not None:
            self._usage.add_tts_characters(call.start, len(greeting.text))
        return participant.identity

    async def _start_session(self, built: BuiltSession, identity: str | None) -> None:
        """The call is active: start the AgentSession with the caller (None: console)."""
        assert self.reporter is not None
        self._caller = identity
        # written while the session starts and the greeting plays, not before them
        activation = asyncio.create_task(
            self.reporter.active(self._resources.config.delivery.progress_interval),
            name="convoi-call-active",
        )
        metrics.call_started()
        if self._limits is not None:
            self._limits.start()
        self._session_started = True
        self._job.room.on("participant_disconnected", self._on_participant_left)
        if identity is not None:  # see worker/presence.py
            self._presence = CallerPresence(
                self._job.room,
                identity,
                clock=self._clock,
                log_fields=self.log_fields,
                lost=PHONE_LOST_CONNECTION if self._is_phone else LOST_CONNECTION,
            )
            self._presence.start()
        try:
            mark("session_start")
            await self._start(built.session, built.agent, identity)
            mark("session_started")
        except BaseException:
            self._session_started = False  # nothing to close
            with contextlib.suppress(Exception):
                await activation
            raise
        await activation
        if self._detection is not None:
            self._detection.start()  # the greeting waits for its verdict
        if identity is not None and self._is_phone:  # the caller's keypad: see worker/dtmf.py
            self._keypad = KeypadInput(
                self._job.room,
                built.session,
                identity,
                on_key=self._limits.caller_active if self._limits is not None else None,
                log_fields=self.log_fields,
            )
            self._keypad.start()

    async def _start_in_room(
        self, session: AgentSession[CallControls], agent: ConvoiAgent, identity: str | None
    ) -> None:
        if identity is None:  # console: livekit's console IO
            await session.start(agent=agent, room=self._job.room)
            return
        early = self._early_audio
        if early is not None:  # published since the room connected: see worker/early_audio.py
            session.output.audio = early.output
        await session.start(
            agent=agent,
            room=self._job.room,
            room_options=room_io.RoomOptions(
                participant_identity=identity,
                close_on_disconnect=True,
                audio_input=room_io.AudioInputOptions(sample_rate=INPUT_SAMPLE_RATE),
                audio_output=early is None,
            ),
        )

    async def _reject(self, exc: CallSpecError | PipelineError) -> None:
        """End a call that cannot run, with the field and problem a human can act on."""
        reason: EndedReason
        if isinstance(exc, CallSpecError):
            reason, where, problem = "invalid_request", exc.field, exc.problem
            message = "call rejected: invalid CallSpec"
        else:
            reason, where, problem = "provider_error", None, str(exc)
            message = "call rejected: provider configuration"
        logger.error(
            message,
            extra={
                **self.log_fields,
                "status": "failed",
                "reason": reason,
                "field": where,
                "problem": problem,
            },
        )
        await self.end(reason, detail=f"{where}: {problem}" if where else problem)

    # -- the end ---------------------------------------------------------------------------

    def end_soon(
        self,
        reason: EndedReason,
        *,
        status: TerminalStatus | None = None,
        fault: Fault | None = None,
        detail: str | None = None,
        at: float | None = None,
        drain: bool = False,
    ) -> asyncio.Task[CallEvent | None]:
        """Decide that the call ends for ``reason`` (unless it already is ending) and return the
        task that ends it. ``status``/``fault`` override the reason's classification; ``at`` is
        when it really ended if earlier than now; ``drain`` lets the agent finish speaking."""
        if self._ending is None:
            request = _EndRequest(reason, status, fault, detail, at, drain)
            self._ending = asyncio.create_task(self._end(request), name="convoi-call-end")
        return self._ending

    async def end(
        self,
        reason: EndedReason,
        *,
        status: TerminalStatus | None = None,
        fault: Fault | None = None,
        detail: str | None = None,
        at: float | None = None,
        drain: bool = False,
    ) -> CallEvent | None:
        """End the call (see :meth:`end_soon`) and wait until it is reported and shut down.

        The result is the ``call.ended`` event (None when the call could not be reported), the
        same for every caller whichever reason won."""
        task = self.end_soon(reason, status=status, fault=fault, detail=detail, at=at, drain=drain)
        return await asyncio.shield(task)

    async def _end(self, request: _EndRequest) -> CallEvent | None:
        if request.reason == "customer_hangup" and await self._transfers.settled():
            request = dataclasses.replace(request, reason="transferred")  # left for the REFER
        if self._limits is not None:
            self._limits.stop()
        self._checkpoints.stop()
        if self._faults is not None:
            self._faults.stop()
        if self._detection is not None:
            self._detection.stop()
        if self._keypad is not None:
            self._keypad.stop()
        if self._presence is not None:
            self._presence.stop()
        if self._remote_end is not None:
            self._remote_end.stop()
        await self._close_session(drain=request.drain)
        if self._early_audio is not None:
            await self._early_audio.aclose()
        event = await self._report_end(request)
        with contextlib.suppress(Exception):  # best effort: the outbox keeps what is not sent
            await self._channel.aclose(timeout=DELIVERY_FLUSH_TIMEOUT)
        await self._transfers.hold(self._bridge_limit())
        if request.reason != "customer_hangup" and not self._job.is_fake_job():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._job.delete_room(), timeout=DELIVERY_FLUSH_TIMEOUT)
        self._job.shutdown(reason=request.reason)
        return event

    async def _close_session(self, *, drain: bool) -> None:
        if self._built is None or not self._session_started or self._session_closed.is_set():
            return
        self._built.session.shutdown(drain=drain)
        try:
            await asyncio.wait_for(self._session_closed.wait(), timeout=SESSION_CLOSE_TIMEOUT)
        except TimeoutError:
            logger.warning(
                "the session did not close in time; ending anyway", extra=self.log_fields
            )

    async def _report_end(self, request: _EndRequest) -> CallEvent | None:
        if self.reporter is None:
            logger.error(
                "cannot report this call: its CallSpec has no valid call_id", extra=self.log_fields
            )
            return None
        life = self.reporter.lifecycle
        status = request.status
        if request.reason == "worker_shutdown" and life.status in ("initiated", "ringing"):
            status = "canceled"  # withdrawn before it connected
        recorder, squad = self._recorder, self._squad
        event: CallEvent | None = None
        try:
            event = await self.reporter.end(
                request.reason,
                status=status,
                fault=request.fault,
                detail=request.detail,
                at=request.at or self._caller_left_at,
                transcript=recorder.transcript if recorder else (),
                latency=recorder.latency if recorder else (),
                handoffs=squad.handoffs if squad else (),
                transfer=self.transfer,
                voicemail=self.voicemail,
            )
        except ReportingError:
            logger.error("the end of this call could not be recorded", extra=self.log_fields)
        logger.info(
            "call ended",
            extra={
                **self.log_fields,
                "status": life.status,
                "reason": life.ended_reason,
                "duration_seconds": round(life.duration_seconds(self._clock()), 3),
                "messages": len(recorder.transcript) if recorder else 0,
            },
        )
        return event

    # -- wiring to the session and the room ------------------------------------------------

    @property
    def _is_phone(self) -> bool:
        return self._peek.get("type") == "outbound_phone"

    @property
    def _squad(self) -> SquadRuntime | None:
        return self._built.squad if self._built is not None else None

    def current_member(self) -> str:
        """The member key of the agent in charge now (``agent`` for single-agent calls)."""
        if self._squad is not None:
            return self._squad.current_member
        return self.resolved.start if self.resolved is not None else "agent"

    def _attach(self, call: ResolvedCall, built: BuiltSession) -> None:
        self._usage = UsageTracker(
            {key: member.agent for key, member in call.members.items()}, self.current_member
        )
        self._recorder = TranscriptRecorder(self.current_member)
        self._limits = LimitsWatch(
            built.session, call.start_agent.agent.limits, self.end_soon, log_fields=self.log_fields
        )
        session: AgentSession[CallControls] = built.session
        self._faults = ProviderFaults(
            session, self._resources.apology, self.end_soon, log_fields=self.log_fields
        )
        usage, recorder = self._usage, self._recorder
        session.on("metrics_collected", lambda ev: usage.add(ev.metrics))
        session.on("conversation_item_added", lambda ev: recorder.record(ev.item))
        session.on("conversation_item_added", lambda _ev: self._checkpoints.poke())
        session.on("agent_state_changed", self._on_agent_state)
        session.on("close", self._on_session_close)
        attach_turn_timing(session)  # the benchmark's per-turn record (off in production)

    def _on_session_close(self, event: CloseEvent) -> None:
        self._session_closed.set()
        if event.error is not None:
            logger.error(
                "the session closed on an error: %s",
                type(event.error).__name__,
                extra=self.log_fields,
            )
        self.end_soon(close_reason_to_ended_reason(event))

    def _on_participant_left(self, participant: rtc.RemoteParticipant) -> None:
        """The caller left the room, whatever the reason (hung up, removed, lost): the call is
        over. RoomIO closes the session itself only for some disconnect reasons. A web caller or
        a phone callee whose connection was lost left when their media stopped (see presence.py)."""
        if participant.identity == self._caller and self._caller_left_at is None:
            presence = self._presence
            reason: int | None = participant.disconnect_reason
            if self._is_phone:
                reason = phone_disconnect_reason(reason, dict(participant.attributes))
            self._caller_left_at = presence.left_at(reason) if presence else self._clock()
            self.end_soon("customer_hangup")

    def _on_agent_state(self, event: AgentStateChangedEvent) -> None:
        started = self.reporter.lifecycle.started_at if self.reporter else None
        if event.new_state == "speaking" and started is not None and not self._greeted:
            self._greeted = True
            metrics.observe_greeting_latency(self._clock() - started)

    def _on_api_hangup(self) -> None:
        """The customer's server ended the call: after the agent's sentence once active;
        canceled before (nobody is talking yet)."""
        life = self.reporter.lifecycle if self.reporter is not None else None
        if life is not None and life.status in ("initiated", "ringing"):
            self.end_soon("api_hangup", status="canceled")
        else:
            self.end_soon("api_hangup", drain=True)

    def _on_voicemail_report(self, report: VoicemailReport) -> None:
        self.voicemail = report

    def _on_event(self, event: CallEvent) -> None:
        """After each committed event: wake the sender; count finished calls in the metrics."""
        self._channel.on_event(event)
        if event.type == "call.ended":
            metrics.call_ended(
                event.status, event.ended_reason, event.cost.amount, len(event.handoffs or [])
            )

    async def _on_job_shutdown(self, reason: str) -> None:
        """The job is shutting down (our own end, or the worker's): the call ends first."""
        await self.end("worker_shutdown", detail=f"job shutdown: {reason}")

    # -- CallControls (what the session's agents ask) --------------------------------------

    def count_stt_audio(self, member: str, seconds: float) -> None:
        """Caller audio streamed to ``member``'s recogniser (STT is billed on it)."""
        if self._usage is not None:
            self._usage.add_stt_audio(member, seconds, self._serving_stt(member))

    def _serving_stt(self, member: str) -> str | None:
        """The STT model now serving ``member`` (a fallback's, after a failover)."""
        if self._built is None:
            return None
        with contextlib.suppress(RuntimeError):  # no agent is running yet
            agent = self._built.session.current_agent
            if agent.id == member:
                return serving_model(agent.stt)
        return None

    def take_greeting_audio(self) -> AsyncIterator[rtc.AudioFrame] | None:
        """The greeting rendered while the phone rang or the browser joined, once."""
        frames, self._greeting_audio = self._greeting_audio, None
        return frames

    def hang_up(self) -> None:
        """The agent ends the call after what it is saying (``agent_hangup``)."""
        logger.info(
            "agent ended the call", extra={**self.log_fields, "agent": self.current_member()}
        )
        self.end_soon("agent_hangup", drain=True)

    async def wait_to_greet(self) -> bool:
        """True at once, unless voicemail detection holds the greeting until its verdict."""
        return await self._detection.wait_to_greet() if self._detection is not None else True

    def heard_before_greeting(self, message: llm.ChatMessage) -> bool:
        """Whether the callee's turn came before the greeting (it is kept in the transcript)."""
        held = self._detection is not None and self._detection.heard_before_greeting(message)
        if held and self._recorder is not None:
            self._recorder.record(message)
        return held

    async def press_keys(self, keys: str) -> None:
        """The agent presses ``keys`` on the phone (its ``send_dtmf`` tool); on a web call there
        is no keypad (a :class:`ToolError` the LLM reads)."""
        if not self._is_phone or self._caller is None:
            raise ToolError("this is not a phone call: there is no keypad to press")
        logger.info("agent pressed keys", extra={**self.log_fields, "keys": len(keys)})
        await publish_keys(self._job.room.local_participant, keys)

    async def transfer_caller(
        self, destination: TransferDestination, *, summary: str | None = None
    ) -> TransferOutcome:
        """Transfer the caller (cold or warm, as ``destination`` says); a success ends the call
        ``completed`` / ``transferred``, a failure is recorded and the conversation goes on."""
        call, built, caller = self.resolved, self._built, self._caller
        if call is None or built is None or caller is None or call.phone_number is None:
            return TransferOutcome(False, "only a connected phone call can be transferred")
        if self.ended or self._transfers.in_flight:
            return TransferOutcome(False, "the call is already ending or being transferred")
        fields = {**self.log_fields, "transfer": destination.name, "mode": destination.mode}
        logger.info("transferring the caller", extra=fields)
        if destination.mode == "cold":
            report = await self._transfers.cold(destination, caller=caller)
        else:
            limits = call.members[self.current_member()].agent.limits
            report = await self._transfers.warm(
                destination,
                session=built.session,
                phone=call.phone_number,
                caller=caller,
                summary=summary,
                ringing_timeout=float(limits.ringing_timeout_seconds),
            )
        self.transfer = report
        if report.succeeded:
            logger.info("call transferred", extra=fields)
            self.end_soon("transferred")
        return TransferOutcome(report.succeeded, report.error)

    async def retrieve_knowledge(self, kb_ids: Sequence[str], query: str) -> Retrieval | None:
        """Search the job process's knowledge index for the caller's turn (never raises)."""
        retriever = self._resources.knowledge
        return await retriever.retrieve(kb_ids, query) if retriever is not None else None

    def _bridge_limit(self) -> float:
        """Longest a warm transfer's bridge is kept up: the agent's call duration limit."""
        call = self.resolved
        return float(call.start_agent.agent.limits.max_duration_seconds) if call else 0.0

    # -- checkpoints and resuming (worker/resume.py) ---------------------------------------

    def _new_reporter(
        self, resources: JobResources, clock: Callable[[], float]
    ) -> CallReporter | None:
        if self.call_id is None:
            return None
        metadata_field = self._peek.get("metadata")
        return CallReporter(
            self.call_id,
            phone=self._peek.get("type") == "outbound_phone",
            store=self._channel.outbox,
            prices=resources.definitions.prices,
            metadata=metadata_field if isinstance(metadata_field, dict) else None,
            usage=self._usage_so_far,
            clock=clock,
            on_event=self._on_event,
            checkpoint=self._checkpoint_now,
        )

    def _checkpoint_trigger(self) -> CheckpointTrigger:
        self._apology: str | None = None  # a resumed call's apology, until it is said
        return CheckpointTrigger(self._progress_now, log_fields=self.log_fields)

    def _usage_so_far(self) -> list[UsageEntry]:
        """The call's usage: this job's, plus the checkpoint's when it resumed the call."""
        since = self._usage.entries() if self._usage is not None else []
        return usage_after(self._resume, since)

    def _checkpoint_now(self) -> Checkpoint | None:
        """The checkpoint that goes in each ``call.progress`` (None before the call is active)."""
        if self.reporter is None or self._recorder is None:
            return None
        life = self.reporter.lifecycle
        squad = self._squad
        return current_checkpoint(
            member=self.current_member(),
            initiated_at=life.initiated_at,
            started_at=life.started_at,
            usage=self._usage_so_far(),
            handoffs=list(squad.handoffs) if squad is not None else [],
            transcript=self._recorder.transcript,
            session=self._built.session if self._built is not None else None,
            resume=self._resume,
        )

    async def _progress_now(self) -> None:
        if self.reporter is not None and not self.ended:
            await self.reporter.progress()

    async def _resume_reporting(self, reporter: CallReporter, resume: Resume) -> None:
        """Continue the call's lifecycle and event sequence where the checkpoint left them."""
        checkpoint = resume.checkpoint
        reporter.resume_from(checkpoint.initiated_at, checkpoint.started_at)
        outbox = self._channel.outbox
        await asyncio.to_thread(outbox.reserve_sequences, reporter.call_id, resume.sequence)
        self._apology = self._resources.config.settings.resume_apology
        self._greeted = True  # no greeting latency to observe
        logger.warning(
            "call resumed",
            extra={
                **self.log_fields,
                "attempt": resume.attempt,
                "member": checkpoint.member,
                "items": len(checkpoint.history),
            },
        )

    async def _restore(self, resume: Resume, built: BuiltSession) -> BuiltSession:
        """The checkpoint's transcript, member and chat history in this job's session."""
        if self._recorder is not None:
            self._recorder.transcript[:0] = restored_transcript(resume)
        agent = await restore_agent(resume, built.agent, built.squad)
        return BuiltSession(built.session, agent, built.squad)

    async def _find_resumed_caller(self) -> str | None:
        """The callee, already in the room (None, and the call ended, if they left)."""
        identity = await find_caller(
            self._job.room, phone=self._is_phone, timeout=CALLER_PRESENT_TIMEOUT
        )
        if identity is None:
            await self.end("worker_error", detail="resumed, but the caller had left the room")
        return identity

    def take_resume_apology(self) -> str | None:
        """What a resumed call says instead of its greeting, once (None: greet as usual)."""
        text, self._apology = self._apology, None
        return text


def _peek(metadata: str) -> dict[str, Any]:
    """Best-effort top-level fields of a CallSpec, even an invalid one (to report on it)."""
    try:
        data = json.loads(metadata)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _valid_call_id(value: object) -> str | None:
    try:
        return _CALL_ID.validate_python(value) if isinstance(value, str) else None
    except ValueError:
        return None
