"""The call object, against a fake job context and the scripted LLM (no server, no room).

Every way a call ends goes through :meth:`convoi.worker.call.Call.end`; these tests drive each one
and read what the call reported from its real outbox: one terminal status with its reason,
duration and cost, exactly once, and the job shut down once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from livekit import api, rtc
from livekit.agents import AgentSession, llm
from livekit.agents.voice.events import CloseReason, UserStateChangedEvent

from convoi.agent import CallControls, ConvoiAgent
from convoi.callspec import resolve_call
from convoi.definitions.models import Agent, Definitions, PhoneNumber
from convoi.pipeline import Pipeline
from convoi.pipeline.factory import PipelineError
from convoi.reporting.delivery import DeliverySettings
from convoi.reporting.events import CallEvent
from convoi.reporting.outbox import Outbox
from convoi.settings import WorkerSettings
from convoi.telephony import DialResult, dial_outcome
from convoi.worker.apology import APOLOGY_TEXT, load_apology
from convoi.worker.call import Call
from convoi.worker.config import JobResources, WorkerConfig
from convoi.worker.limits import LimitsWatch
from convoi.worker.metrics import MetricsSettings
from convoi.worker.session import build_session
from tests.fake_llm import Reply, ScriptedLLM
from tests.helpers import SUPPORT, US_LINE

PHONE = US_LINE
TIMEOUT = 30.0


class Clock:
    """A clock the test moves: durations are exact."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeRoom:
    """The room as the call uses it: a name and participant events."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        self._handlers.setdefault(event, []).append(handler)
        return handler

    def emit(self, event: str, *args: Any) -> None:
        for handler in self._handlers.get(event, []):
            handler(*args)


class FakeParticipant:
    def __init__(
        self,
        identity: str,
        disconnect_reason: int | None = None,
        attributes: dict[str, str] | None = None,
    ) -> None:
        self.identity = identity
        self.disconnect_reason = disconnect_reason
        self.attributes = attributes or {}


class FakeJob:
    """livekit's JobContext as the call uses it; records shutdowns and room deletions.

    ``shutdown`` runs the shutdown callbacks, as the job process does."""

    def __init__(self, participant: str | None = "browser-1") -> None:
        self.room = FakeRoom("room-call-test")
        self.api: api.LiveKitAPI = None  # type: ignore[assignment]  # only the dialer uses it
        self.participant = participant
        self.shutdowns: list[str] = []
        self.deleted_rooms = 0
        self.connected = False
        self.callbacks: list[Callable[[str], Coroutine[None, None, None]]] = []
        self.shut_down = asyncio.Event()
        self.log_context_fields: dict[str, Any] = {}
        self._callback_tasks: list[asyncio.Task[None]] = []

    def is_fake_job(self) -> bool:
        return False

    async def connect(self) -> None:
        self.connected = True

    async def wait_for_participant(
        self, *, identity: str | None = None, kind: Any = None
    ) -> rtc.RemoteParticipant:
        if self.participant is None:
            await asyncio.Event().wait()  # never joins
        return FakeParticipant(self.participant)  # type: ignore[return-value]

    def delete_room(self, room_name: str | None = None) -> asyncio.Future[Any]:
        self.deleted_rooms += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def shutdown(self, reason: str = "user requested") -> None:
        self.shutdowns.append(reason)
        if len(self.shutdowns) == 1:
            self._callback_tasks = [asyncio.create_task(cb(reason)) for cb in self.callbacks]
            asyncio.get_running_loop().call_soon(self.shut_down.set)

    def add_shutdown_callback(self, callback: Callable[[str], Coroutine[None, None, None]]) -> None:
        self.callbacks.append(callback)

    async def finished(self) -> None:
        await asyncio.wait_for(self.shut_down.wait(), TIMEOUT)
        await asyncio.wait_for(asyncio.gather(*self._callback_tasks), TIMEOUT)


class TextRoom:
    """Starts the session in text mode; a caller leaving closes it as RoomIO does."""

    def __init__(self, job: FakeJob) -> None:
        self.job = job
        self.session: AgentSession[CallControls] | None = None
        self.started = asyncio.Event()

    async def __call__(
        self, session: AgentSession[CallControls], agent: ConvoiAgent, identity: str | None
    ) -> None:
        self.session = session
        await session.start(agent)
        self.started.set()

    def caller_leaves(self, identity: str = "browser-1") -> None:
        hung_up = {"sip.callStatus": "hangup"}  # what livekit-sip sets before it leaves (BYE)
        self.job.room.emit("participant_disconnected", FakeParticipant(identity, None, hung_up))
        assert self.session is not None
        # what RoomIO does with close_on_disconnect=True
        self.session._close_soon(reason=CloseReason.PARTICIPANT_DISCONNECTED)


class Scripted:
    """Pipeline factory: a scripted LLM per agent, no STT/TTS (text mode)."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies

    def __call__(self, agent: Agent, settings: WorkerSettings) -> Pipeline:
        return Pipeline(stt=None, llm=ScriptedLLM(self.replies, model=agent.llm.model), tts=None)


class FakeDialer:
    """Answers or fails the way the real dialers report it."""

    def __init__(self, result: Callable[[str], DialResult]) -> None:
        self.result = result
        self.dialled: list[str] = []

    async def __call__(
        self, lk: api.LiveKitAPI, *, phone: PhoneNumber, to_number: str, identity: str, **_: Any
    ) -> DialResult:
        self.dialled.append(to_number)
        return self.result(identity)


def answered(identity: str) -> DialResult:
    return DialResult(True, None, identity, "SCL_test", time.time())


def busy(identity: str) -> DialResult:
    outcome = dial_outcome(486, timed_out=False, message="Busy Here")
    return DialResult(False, outcome, identity, None, None)


def resources(
    defs: Definitions, tmp_path: Path, dialer: Any = None, **settings: Any
) -> JobResources:
    config = WorkerConfig(
        settings=WorkerSettings().model_copy(update=settings),
        delivery=DeliverySettings(CONVOI_OUTBOX_PATH=tmp_path / "outbox.sqlite3"),
        metrics=MetricsSettings(),
        dialer=dialer or FakeDialer(answered),
    )
    return JobResources(config, defs, vad=None, apology=load_apology())


def web_spec(**fields: Any) -> str:
    spec = {"call_id": "call_unit0001", "type": "web", "agent_id": SUPPORT, **fields}
    return json.dumps(spec)


def phone_spec(**fields: Any) -> str:
    spec = {
        "call_id": "call_unit0002",
        "type": "outbound_phone",
        "agent_id": SUPPORT,
        "phone_number_id": PHONE,
        "customer": {"number": "+15550000002", "name": "Ahmed"},
        "metadata": {"campaign": "unit"},
        **fields,
    }
    return json.dumps(spec)


def reported(tmp_path: Path) -> list[CallEvent]:
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        return sorted(
            (p.event() for p in outbox.due(now=float("inf"), limit=1000)),
            key=lambda e: (e.call_id, e.sequence),
        )


def ended(events: list[CallEvent]) -> CallEvent:
    [final] = [e for e in events if e.type == "call.ended"]
    return final


def statuses(events: list[CallEvent]) -> list[str]:
    return [e.status for e in events if e.type == "call.status"]


async def assistant_said(session: AgentSession[Any], text: str) -> None:
    """Wait (event-driven) until the agent has said ``text``."""

    def said() -> bool:
        return any(
            isinstance(i, llm.ChatMessage) and i.role == "assistant" and text in i.text_content
            for i in session.history.items
        )

    if said():
        return
    done = asyncio.get_running_loop().create_future()

    def on_item(_: Any) -> None:
        if said() and not done.done():
            done.set_result(None)

    session.on("conversation_item_added", on_item)
    await asyncio.wait_for(done, TIMEOUT)


async def running_web_call(
    defs: Definitions, tmp_path: Path, replies: list[Reply], clock: Clock, **spec: Any
) -> tuple[Call, FakeJob, TextRoom]:
    job = FakeJob()
    room = TextRoom(job)
    call = Call(
        job,
        web_spec(**spec),
        resources(defs, tmp_path),
        pipeline_factory=Scripted(replies),
        start_session=room,
        clock=clock,
    )
    await call.run()
    await asyncio.wait_for(room.started.wait(), TIMEOUT)
    assert room.session is not None
    await assistant_said(room.session, "thanks for calling Convoi support")
    return call, job, room


# -- each way a call ends ---------------------------------------------------------------------


async def test_caller_hangs_up_completed_with_duration_to_the_moment_they_left(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    _call, job, room = await running_web_call(
        defs, tmp_path, [Reply("Your order ships tomorrow.")], clock, participant_name="Ahmed"
    )
    assert room.session is not None
    clock.now += 5
    await room.session.run(user_input="Where is my order?")
    clock.now += 25
    room.caller_leaves()
    clock.now += 7  # the session takes a while to close: not billed
    await job.finished()

    events = reported(tmp_path)
    assert statuses(events) == ["initiated", "active", "completed"]
    final = ended(events)
    assert (final.status, final.ended_reason, final.fault) == ("completed", "customer_hangup", None)
    assert final.duration_seconds == 30.0
    assert [(t.role, t.text) for t in final.transcript or []] == [
        ("assistant", "Hi Ahmed, thanks for calling Convoi support. How can I help you today?"),
        ("user", "Where is my order?"),
        ("assistant", "Your order ships tomorrow."),
    ]
    assert final.cost.by_component["platform"] == Decimal("0.02") * Decimal(30) / Decimal(60)
    assert final.cost.by_component["llm"] > 0
    assert final.cost.amount == sum(final.cost.by_component.values())
    assert job.log_context_fields == {"call_id": "call_unit0001"}  # on every line of the job
    assert job.shutdowns == ["customer_hangup"]
    assert job.deleted_rooms == 0  # the caller left: nothing to tear down for them


async def test_caller_leaving_for_any_reason_ends_the_call(
    defs: Definitions, tmp_path: Path
) -> None:
    """RoomIO closes the session only for some disconnect reasons (not, e.g., a participant
    removed from the room): the call ends on its caller leaving, whatever the reason."""
    clock = Clock()
    _call, job, room = await running_web_call(defs, tmp_path, [], clock)
    clock.now += 8
    job.room.emit("participant_disconnected", FakeParticipant("browser-1"))  # session untouched
    clock.now += 3
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.duration_seconds) == (
        "completed",
        "customer_hangup",
        8.0,
    )
    assert room.session is not None and not room.session._started  # the call closed it


async def test_someone_else_leaving_the_room_does_not_end_the_call(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    call, job, _room = await running_web_call(defs, tmp_path, [], clock)
    job.room.emit("participant_disconnected", FakeParticipant("supervisor-7"))
    assert not call.ended
    await call.end("agent_hangup")
    await job.finished()
    assert ended(reported(tmp_path)).ended_reason == "agent_hangup"


async def test_livekit_closing_the_session_itself_is_a_worker_shutdown(
    defs: Definitions, tmp_path: Path
) -> None:
    """A close the call did not ask for (livekit closes sessions when the job shuts down)."""
    clock = Clock()
    _call, job, room = await running_web_call(defs, tmp_path, [], clock)
    assert room.session is not None
    await room.session.aclose()
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.fault) == (
        "failed",
        "worker_shutdown",
        "platform",
    )


async def test_silent_caller_is_prompted_once_then_the_call_ends_silence_timeout(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    _call, job, room = await running_web_call(defs, tmp_path, [], clock)
    session = room.session
    assert session is not None
    limits = defs.agents[SUPPORT].limits
    away = UserStateChangedEvent(old_state="listening", new_state="away")
    session.emit("user_state_changed", away)  # what livekit's away timer does
    await assistant_said(session, limits.silence_prompt)
    session.emit(
        "user_state_changed", UserStateChangedEvent(old_state="away", new_state="speaking")
    )
    session.emit("user_state_changed", away)  # silent again after speaking: a fresh prompt
    assert not job.shutdowns
    clock.now += 40
    session.emit("user_state_changed", away)  # and silent once more: goodbye
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.fault) == ("completed", "silence_timeout", None)
    said = [t.text for t in final.transcript or [] if t.role == "assistant"]
    assert said[1:] == [limits.silence_prompt, limits.silence_prompt, limits.silence_goodbye]
    assert job.deleted_rooms == 1


async def test_max_duration_wraps_up_then_ends_the_call(defs: Definitions) -> None:
    built = build_session(
        resolve_call(web_spec(), defs), WorkerSettings(), vad=None, pipeline_factory=Scripted([])
    )
    limits = defs.agents[SUPPORT].limits.model_copy(
        update={"max_duration_seconds": 120, "wrap_up_seconds": 20}
    )
    slept: list[float] = []
    ends: list[tuple[str, bool]] = []

    async def sleep(seconds: float) -> None:  # the limit's own clock, moved by the test
        slept.append(seconds)

    def end_soon(reason: str, *, drain: bool = False) -> None:
        ends.append((reason, drain))

    async with built.session as session:
        await session.start(built.agent)
        watch = LimitsWatch(session, limits, end_soon, sleep=sleep)  # type: ignore[arg-type]
        watch.start()
        assert watch._deadline is not None
        await asyncio.wait_for(watch._deadline, TIMEOUT)
        await assistant_said(session, limits.wrap_up_message)
    assert slept == [100, 20]
    assert ends == [("max_duration", True)]  # drained: the wrap-up is heard


async def test_agent_hangs_up_after_its_goodbye(defs: Definitions, tmp_path: Path) -> None:
    clock = Clock()
    _call, job, room = await running_web_call(
        defs, tmp_path, [Reply(when="bye", tool="end_call"), Reply("Goodbye!")], clock
    )
    assert room.session is not None
    clock.now += 12
    room.session.generate_reply(user_input="That's all, bye")
    await job.finished()

    events = reported(tmp_path)
    final = ended(events)
    assert (final.status, final.ended_reason) == ("completed", "agent_hangup")
    assert final.duration_seconds == 12.0
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert job.shutdowns == ["agent_hangup"]
    assert job.deleted_rooms == 1  # our side ended it: the room goes, the caller is released


async def test_busy_phone_reports_ringing_then_busy_and_never_starts_a_session(
    defs: Definitions, tmp_path: Path
) -> None:
    job = FakeJob()
    room = TextRoom(job)
    dialer = FakeDialer(busy)
    call = Call(
        job,
        phone_spec(),
        resources(defs, tmp_path, dialer),
        pipeline_factory=Scripted([]),
        start_session=room,
    )
    await call.run()
    await job.finished()

    events = reported(tmp_path)
    assert statuses(events) == ["initiated", "ringing", "busy"]
    final = ended(events)
    assert (final.status, final.ended_reason, final.fault) == ("busy", "dial_busy", "customer")
    assert final.detail is not None and "486" in final.detail
    assert final.duration_seconds == 0.0
    assert final.cost.amount == 0
    assert final.metadata == {"campaign": "unit"}
    assert dialer.dialled == ["+15550000002"]
    assert room.session is None
    assert job.shutdowns == ["dial_busy"]


async def test_answered_phone_call_bills_telephony_until_the_callee_hangs_up(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    job = FakeJob()
    room = TextRoom(job)
    call = Call(
        job,
        phone_spec(),
        resources(defs, tmp_path, FakeDialer(answered)),
        pipeline_factory=Scripted([]),
        start_session=room,
        clock=clock,
    )
    await call.run()
    assert room.session is not None
    await assistant_said(room.session, "Hi Ahmed")
    clock.now += 60
    room.caller_leaves("phone-15550000002")
    await job.finished()

    events = reported(tmp_path)
    assert statuses(events) == ["initiated", "ringing", "active", "completed"]
    final = ended(events)
    assert (final.ended_reason, final.duration_seconds) == ("customer_hangup", 60.0)
    assert final.cost.by_component["telephony"] == Decimal("0.013")


async def test_web_participant_who_never_joins(defs: Definitions, tmp_path: Path) -> None:
    job = FakeJob(participant=None)
    config = resources(defs, tmp_path, web_join_timeout_seconds=0.05)
    call = Call(job, web_spec(), config, pipeline_factory=Scripted([]))
    await call.run()
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.fault) == (
        "failed",
        "participant_never_joined",
        "customer",
    )
    assert job.shutdowns == ["participant_never_joined"]


async def test_invalid_callspec_is_reported_with_the_field_at_fault(
    defs: Definitions, tmp_path: Path
) -> None:
    job = FakeJob()
    call = Call(
        job,
        web_spec(agent_overrides={"voice": "x"}, metadata={"k": "v"}),
        resources(defs, tmp_path),
        pipeline_factory=Scripted([]),
    )
    await call.run()
    await job.finished()

    events = reported(tmp_path)
    assert statuses(events) == ["initiated", "failed"]
    final = ended(events)
    assert (final.status, final.ended_reason, final.fault) == (
        "failed",
        "invalid_request",
        "config",
    )
    assert final.detail is not None and final.detail.startswith("agent_overrides.voice")
    assert final.metadata == {"k": "v"}
    assert not job.connected  # rejected before touching the room
    assert job.shutdowns == ["invalid_request"]


async def test_callspec_without_a_valid_call_id_ends_the_job_unreported(
    defs: Definitions, tmp_path: Path
) -> None:
    job = FakeJob()
    call = Call(job, "{not json", resources(defs, tmp_path), pipeline_factory=Scripted([]))
    await call.run()
    await job.finished()
    assert reported(tmp_path) == []
    assert job.shutdowns == ["invalid_request"]


async def test_provider_configuration_error_is_a_provider_failure(
    defs: Definitions, tmp_path: Path
) -> None:
    def no_keys(agent: Agent, settings: WorkerSettings) -> Pipeline:
        raise PipelineError("OPENAI_API_KEY is not set")

    job = FakeJob()
    call = Call(job, web_spec(), resources(defs, tmp_path), pipeline_factory=no_keys)
    await call.run()
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.fault) == (
        "failed",
        "provider_error",
        "provider",
    )
    assert final.detail == "OPENAI_API_KEY is not set"


async def test_llm_failing_mid_call_ends_it_as_a_provider_error(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    _call, job, room = await running_web_call(defs, tmp_path, [Reply(error="upstream 500")], clock)
    assert room.session is not None
    # the first unrecoverable error ends the call (livekit alone would wait for the 4th)
    handle = room.session.generate_reply(user_input="Hello?")
    await handle.wait_for_playout()
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.fault) == (
        "failed",
        "provider_error",
        "provider",
    )
    assert final.detail == "every llm provider failed"
    assert final.transcript[-1].text == APOLOGY_TEXT  # it was said before the end
    assert job.shutdowns == ["provider_error"]


async def test_job_shutdown_while_ringing_cancels_the_call(
    defs: Definitions, tmp_path: Path
) -> None:
    job = FakeJob()
    ringing = asyncio.Event()

    async def never_answers(lk: api.LiveKitAPI, **_: Any) -> DialResult:
        ringing.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    call = Call(
        job,
        phone_spec(),
        resources(defs, tmp_path, never_answers),
        pipeline_factory=Scripted([]),
    )
    run = asyncio.create_task(call.run())
    await asyncio.wait_for(ringing.wait(), TIMEOUT)
    job.shutdown("worker draining")  # what the worker does to its jobs on a hard stop
    await job.finished()
    run.cancel()

    events = reported(tmp_path)
    assert statuses(events) == ["initiated", "ringing", "canceled"]
    final = ended(events)
    assert (final.status, final.ended_reason, final.fault) == (
        "canceled",
        "worker_shutdown",
        "platform",
    )


# -- exactly once -------------------------------------------------------------------------------


async def test_two_ends_racing_report_once_and_the_first_reason_wins(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    call, job, room = await running_web_call(defs, tmp_path, [], clock)
    clock.now += 3
    first, second = await asyncio.gather(
        call.end("agent_hangup"), call.end("provider_error", detail="late")
    )
    room.caller_leaves()  # and a third path, after the fact
    await job.finished()

    events = reported(tmp_path)
    assert [e.type for e in events].count("call.ended") == 1
    final = ended(events)
    assert first == second == final
    assert (final.ended_reason, final.duration_seconds) == ("agent_hangup", 3.0)
    assert job.shutdowns == ["agent_hangup"]


async def test_a_reporting_fault_never_loses_the_final_event(
    defs: Definitions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("convoi.reporting.reporter.FINAL_EVENT_RETRY_SECONDS", 0.01)
    clock = Clock()
    call, job, _room = await running_web_call(defs, tmp_path, [], clock)
    assert call.reporter is not None

    def broken_usage() -> list[Any]:
        raise RuntimeError("usage tracker bug")

    call.reporter._usage = broken_usage
    outbox = call.reporter._store
    real_add = outbox.add
    failures = iter([True, True])  # the outbox refuses the first two writes of call.ended

    def flaky_add(event: CallEvent) -> None:
        if event.type == "call.ended" and next(failures, False):
            raise OSError("disk I/O error")
        real_add(event)

    monkeypatch.setattr(outbox, "add", flaky_add)
    clock.now += 9
    await call.end("agent_hangup")
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.duration_seconds) == (
        "completed",
        "agent_hangup",
        9.0,
    )
    assert final.detail is not None and "could not be reported" in final.detail
    assert job.shutdowns == ["agent_hangup"]


# -- the hang-up API (worker/remote_end.py) ---------------------------------------------------


async def test_the_apis_end_request_ends_the_call_api_hangup(
    defs: Definitions, tmp_path: Path
) -> None:
    from livekit import rtc

    from convoi.room_control import TOPIC, encode_end

    clock = Clock()
    _call, job, _room = await running_web_call(defs, tmp_path, [], clock)
    clock.now += 9
    forged = rtc.DataPacket(encode_end("call_unit0001"), 0, FakeParticipant("browser-1"), TOPIC)
    job.room.emit("data_received", forged)  # a participant cannot end the call this way
    job.room.emit("data_received", rtc.DataPacket(encode_end("call_unit0001"), 0, None, TOPIC))
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.fault) == ("completed", "api_hangup", None)
    assert final.duration_seconds == 9.0
    assert job.shutdowns == ["api_hangup"] and job.deleted_rooms == 1


async def test_the_apis_end_request_while_ringing_cancels_the_call(
    defs: Definitions, tmp_path: Path
) -> None:
    from livekit import rtc

    from convoi.room_control import TOPIC, encode_end

    job = FakeJob()
    ringing = asyncio.Event()

    async def never_answers(lk: api.LiveKitAPI, **_: Any) -> DialResult:
        ringing.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    call = Call(
        job, phone_spec(), resources(defs, tmp_path, never_answers), pipeline_factory=Scripted([])
    )
    run = asyncio.create_task(call.run())
    await asyncio.wait_for(ringing.wait(), TIMEOUT)
    job.room.emit("data_received", rtc.DataPacket(encode_end("call_unit0002"), 0, None, TOPIC))
    await job.finished()
    run.cancel()

    events = reported(tmp_path)
    assert statuses(events) == ["initiated", "ringing", "canceled"]
    final = ended(events)
    assert (final.status, final.ended_reason, final.fault) == ("canceled", "api_hangup", None)
