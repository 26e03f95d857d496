"""Checkpoints and resuming a call: building and restoring a checkpoint, the re-dispatch
decisions of the worker's main process and of the control plane, and a resumed call in text mode.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from livekit import api, rtc
from livekit.agents import llm

from convoi.controlplane.checkpoints import (
    claim_resume,
    resumable_calls,
    store_checkpoint,
    stored_body,
)
from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.models import Account, Call, CallCheckpoint
from convoi.controlplane.leases import LeaseKeeper, Leases
from convoi.definitions.models import Definitions
from convoi.pipeline import Pipeline
from convoi.reporting.checkpoint import (
    CHECKPOINT_MAX_BYTES,
    MAX_TEXT_CHARS,
    RESUME_KEY,
    Resume,
    build_checkpoint,
    chat_context_of,
    history_of,
    merge_usage,
    split_resume,
    transcript_of,
    with_resume,
)
from convoi.reporting.events import (
    CallEvent,
    Checkpoint,
    Cost,
    HistoryItem,
    TranscriptEntry,
    UsageEntry,
)
from convoi.reporting.orphans import resumable
from convoi.worker.call import Call as WorkerCall
from convoi.worker.supervision import callee_in_room
from tests import test_controlplane_db as _backends
from tests.fake_llm import Reply, ScriptedLLM
from tests.test_call import (
    TIMEOUT,
    Clock,
    FakeJob,
    FakeRoom,
    Scripted,
    TextRoom,
    assistant_said,
    ended,
    reported,
    resources,
    web_spec,
)

database_url = _backends.database_url  # the control-plane tests run on SQLite and PostgreSQL
database = _backends.database

# -- building and restoring a checkpoint ------------------------------------------------------


def _usage(member: str = "agent", tokens: int = 10, seconds: float = 1.5) -> list[UsageEntry]:
    return [
        UsageEntry(member=member, kind="llm", provider="openai", model="gpt-4o-mini",
                   input_tokens=tokens, output_tokens=tokens),
        UsageEntry(member=member, kind="stt", provider="deepgram", model="nova-3",
                   audio_seconds=seconds),
    ]  # fmt: skip


def _checkpoint(history: list[HistoryItem] | None = None, **fields: Any) -> Checkpoint:
    return build_checkpoint(
        member=fields.pop("member", "agent"),
        initiated_at=100.0,
        started_at=105.0,
        usage=_usage(),
        handoffs=[],
        history=history or [],
        **fields,
    )


def test_the_history_holds_messages_and_tool_calls_in_order() -> None:
    transcript = [
        TranscriptEntry(role="assistant", text="Hello, how can I help?", at=1.0, member="agent"),
        TranscriptEntry(role="user", text="My name is Ada.", at=2.0),
        TranscriptEntry(role="user", text="42#", at=4.0, source="dtmf"),
    ]
    items: list[llm.ChatItem] = [
        llm.FunctionCall(call_id="c1", name="lookup", arguments='{"q": "Ada"}', created_at=3.0),
        llm.FunctionCallOutput(call_id="c1", name="lookup", output="found", is_error=False),
        llm.FunctionCall(call_id="c2", name="never_answered", arguments="{}", created_at=3.5),
    ]
    history = history_of(transcript, items)
    assert [(h.role, h.text, h.name) for h in history] == [
        ("assistant", "Hello, how can I help?", None),
        ("user", "My name is Ada.", None),
        ("tool", "found", "lookup"),  # a call without its output is left out
        ("user", "42#", None),
    ]
    checkpoint = _checkpoint(history)
    assert transcript_of(checkpoint) == transcript  # the spoken part, exactly
    ctx = chat_context_of(checkpoint)
    assert [i.type for i in ctx.items] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    call, output = ctx.items[2], ctx.items[3]
    assert isinstance(call, llm.FunctionCall) and isinstance(output, llm.FunctionCallOutput)
    assert (call.name, call.arguments, output.output, output.call_id) == (
        "lookup",
        '{"q": "Ada"}',
        "found",
        call.call_id,
    )
    first = ctx.items[1]
    assert isinstance(first, llm.ChatMessage) and first.text_content == "My name is Ada."


def test_a_checkpoint_is_bounded_dropping_the_oldest_items() -> None:
    transcript = [
        TranscriptEntry(role="user", text=f"turn {i} " + "x" * 900, at=float(i)) for i in range(80)
    ]
    history = history_of(transcript, [])
    checkpoint = _checkpoint(history)
    size = len(checkpoint.model_dump_json().encode())
    assert size <= CHECKPOINT_MAX_BYTES
    assert checkpoint.dropped > 0
    assert len(checkpoint.history) + checkpoint.dropped == 80
    assert checkpoint.history[-1].text.startswith("turn 79 ")  # the newest are kept
    assert checkpoint.history[0].text.startswith(f"turn {checkpoint.dropped} ")
    long = history_of([TranscriptEntry(role="user", text="y" * 10_000, at=1.0)], [])
    assert len(long[0].text) == MAX_TEXT_CHARS


def test_usage_before_and_after_a_resume_is_summed() -> None:
    merged = merge_usage(_usage(tokens=10, seconds=1.5), [*_usage(tokens=5, seconds=0.25)])
    by_kind = {u.kind: u for u in merged}
    assert (by_kind["llm"].input_tokens, by_kind["llm"].output_tokens) == (15, 15)
    assert by_kind["stt"].audio_seconds == 1.75
    other = merge_usage(_usage(), _usage(member="billing"))
    assert len(other) == 4  # per member


def test_the_resume_travels_in_the_dispatch_metadata() -> None:
    spec = web_spec()
    resume = Resume(attempt=1, sequence=7, checkpoint=_checkpoint())
    metadata = with_resume(spec, resume)
    assert json.loads(metadata)["call_id"] == "call_unit0001"
    back, found = split_resume(metadata)
    assert json.loads(back) == json.loads(spec)
    assert found == resume
    assert split_resume(spec) == (spec, None)
    broken = json.dumps({**json.loads(spec), RESUME_KEY: {"attempt": "x"}})
    # an invalid resume stays in the CallSpec, which then fails validation: never a fresh dial
    assert split_resume(broken) == (broken, None)


# -- the worker's main process: resume or end a dead job's call ----------------------------


def _event(status: Any = "active", checkpoint: Checkpoint | None = None, seq: int = 5) -> CallEvent:
    return CallEvent(
        id=f"evt_{seq:032x}",
        call_id="call_unit0001",
        sequence=seq,
        type="call.progress" if status == "active" else "call.ended",
        created_at=110.0,
        status=status,
        cost=Cost(amount=Decimal(0)),
        checkpoint=checkpoint,
    )


def test_a_dead_jobs_call_is_resumable_only_while_active_with_a_checkpoint_and_tries_left() -> None:
    checkpoint = _checkpoint()
    resume = resumable(_event(checkpoint=checkpoint), attempts=0, max_resumes=2)
    assert resume is not None
    assert (resume.attempt, resume.sequence, resume.checkpoint.resumes) == (1, 5, 1)
    again = resumable(_event(checkpoint=checkpoint), attempts=1, max_resumes=2)
    assert again is not None and again.attempt == 2
    assert resumable(_event(checkpoint=checkpoint), attempts=2, max_resumes=2) is None
    assert resumable(_event(checkpoint=checkpoint), attempts=0, max_resumes=0) is None
    assert resumable(_event(), attempts=0, max_resumes=2) is None  # no checkpoint yet
    assert resumable(_event("completed", checkpoint), attempts=0, max_resumes=2) is None
    assert resumable(None, attempts=0, max_resumes=2) is None


def test_the_callee_is_in_the_room_when_a_sip_or_browser_participant_is() -> None:
    kind, state = api.ParticipantInfo.Kind, api.ParticipantInfo.State
    agent = api.ParticipantInfo(identity="agent-1", kind=kind.AGENT, state=state.ACTIVE)
    phone = api.ParticipantInfo(identity="phone-1", kind=kind.SIP, state=state.ACTIVE)
    browser = api.ParticipantInfo(identity="web-1", kind=kind.STANDARD, state=state.JOINED)
    gone = api.ParticipantInfo(identity="web-2", kind=kind.STANDARD, state=state.DISCONNECTED)
    assert callee_in_room([agent, phone])
    assert callee_in_room([browser])
    assert not callee_in_room([agent])
    assert not callee_in_room([agent, gone])
    assert not callee_in_room([])


# -- the control plane: the latest checkpoint, and resuming a silent call ------------------


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _add_call(db: Database, call_id: str = "call_unit0001", **fields: Any) -> None:
    with db.session() as session:
        if session.get(Account, "acct_t") is None:
            session.add(Account(id="acct_t"))
        values: dict[str, Any] = {
            "type": "web",
            "status": "active",
            "room_id": f"room-{call_id}",
            "callspec": web_spec(call_id=call_id),
            "last_event_sequence": 5,
            "updated_at": NOW - timedelta(seconds=20),
            **fields,
        }
        session.add(Call(id=call_id, account_id="acct_t", **values))
        session.commit()


def _progress(seq: int, checkpoint: Checkpoint | None, status: Any = "active") -> CallEvent:
    return _event(status, checkpoint, seq)


def test_the_control_plane_keeps_the_latest_checkpoint_and_forgets_it_at_the_end(
    database: Database,
) -> None:
    _add_call(database)
    first = _checkpoint([HistoryItem(role="user", text="My name is Ada.", at=1.0)])
    newer = _checkpoint([*first.history, HistoryItem(role="assistant", text="Hi Ada", at=2.0)])
    with database.session() as session:
        store_checkpoint(session, _progress(4, first), NOW)
        store_checkpoint(session, _progress(6, newer), NOW)
        store_checkpoint(session, _progress(5, first), NOW)  # late and older: ignored
        session.commit()
        row = session.get(CallCheckpoint, "call_unit0001")
        assert row is not None and row.sequence == 6
        assert Checkpoint.model_validate_json(row.body) == newer
        store_checkpoint(session, _progress(7, None, "completed"), NOW)
        session.commit()
        assert session.get(CallCheckpoint, "call_unit0001") is None  # customer speech: gone
    event = _progress(4, first)
    body = stored_body(event, event.model_dump_json())
    assert "checkpoint" not in body or json.loads(body)["checkpoint"] is None
    assert "Ada" not in body


def test_a_silent_active_call_with_a_checkpoint_is_resumable_a_bounded_number_of_times(
    database: Database,
) -> None:
    _add_call(database)
    _add_call(database, "call_unit0002", updated_at=NOW - timedelta(seconds=5))  # not silent
    _add_call(database, "call_unit0003")  # no checkpoint
    with database.session() as session:
        checkpoint = _checkpoint([HistoryItem(role="user", text="My name is Ada.", at=1.0)])
        store_checkpoint(session, _progress(5, checkpoint), NOW)
        store_checkpoint(session, _progress(5, checkpoint).model_copy(
            update={"call_id": "call_unit0002"}), NOW)  # fmt: skip
        session.commit()
        [found] = resumable_calls(session, NOW, silent_for=15, max_resumes=2)
    assert (found.call_id, found.room_id, found.attempt) == (
        "call_unit0001",
        "room-call_unit0001",
        1,
    )
    spec, resume = split_resume(found.metadata)
    assert resume is not None and json.loads(spec)["call_id"] == "call_unit0001"
    assert (resume.attempt, resume.sequence, resume.checkpoint.history) == (
        1,
        5,
        checkpoint.history,
    )
    with database.session() as session:
        assert claim_resume(session, "call_unit0001", 1, NOW)
        assert not claim_resume(session, "call_unit0001", 1, NOW)  # another API process: no
        assert resumable_calls(session, NOW, silent_for=15, max_resumes=2) == []  # lease renewed
        later = NOW + timedelta(seconds=30)
        again_ = resumable_calls(session, later, silent_for=15, max_resumes=2)
        [again] = [c for c in again_ if c.call_id == "call_unit0001"]
        assert again.attempt == 2
        assert claim_resume(session, "call_unit0001", 2, later)
        last = resumable_calls(session, later + timedelta(seconds=30), silent_for=15, max_resumes=2)
        assert "call_unit0001" not in [c.call_id for c in last]  # resumed twice: no more


class ProbeGateway:
    """A LiveKit gateway that tells who is in a room and records dispatches."""

    def __init__(self, callee: bool, agent: bool) -> None:
        self.occupants = (callee, agent)
        self.dispatched: list[tuple[str, str, str]] = []
        self.deleted: list[str] = []

    def room_occupants(self, room: str) -> tuple[bool, bool]:
        return self.occupants

    def dispatch(self, room: str, agent_name: str, metadata: str) -> str:
        self.dispatched.append((room, agent_name, metadata))
        return "AD_test"

    def delete_room(self, name: str) -> None:
        self.deleted.append(name)


@pytest.mark.parametrize(
    ("callee", "agent", "resumed"),
    [(True, False, True), (False, False, False), (True, True, False)],
    ids=["callee-alone", "callee-gone", "agent-still-there"],
)
async def test_the_lease_keeper_dispatches_again_only_a_callee_waiting_alone(
    database: Database, callee: bool, agent: bool, resumed: bool
) -> None:
    _add_call(database, updated_at=datetime.now(UTC) - timedelta(seconds=20))
    with database.session() as session:
        store_checkpoint(session, _progress(5, _checkpoint()), NOW)
        session.commit()
    gateway = ProbeGateway(callee, agent)
    keeper = LeaseKeeper(
        database,
        gateway,  # type: ignore[arg-type]  # the parts of the gateway the keeper uses
        Leases(active=60, starting=180, resume_after=15, max_resumes=2),
        agent_name="convoi-test",
    )
    expired = await keeper.sweep()
    assert expired == []  # within the full lease either way
    with database.session() as session:
        call = session.get(Call, "call_unit0001")
        assert call is not None and call.status == "active"
        renewed = (datetime.now(UTC) - call.updated_at).total_seconds() < 10
    if resumed:
        [(room, name, metadata)] = gateway.dispatched
        assert (room, name) == ("room-call_unit0001", "convoi-test")
        assert split_resume(metadata)[1] is not None
        assert renewed
    else:
        assert gateway.dispatched == [] and not renewed


# -- a resumed call (text mode) ------------------------------------------------------------


class Present:
    """A participant as the resumed call looks for it."""

    def __init__(self, identity: str, kind: int) -> None:
        self.identity = identity
        self.kind = kind
        self.disconnect_reason = None


class RoomWithCaller(FakeRoom):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.remote_participants: dict[str, Present] = {}

    def off(self, event: str, handler: Any) -> None:
        self._handlers.get(event, []).remove(handler)


async def test_a_resumed_call_carries_on_without_dialling_or_greeting(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    started = clock.now - 40  # active for 40 s before the job died
    history = [
        HistoryItem(role="assistant", text="Hi, thanks for calling.", at=started + 1, member="agent"),
        HistoryItem(role="user", text="My name is Ada.", at=started + 5),
        HistoryItem(role="assistant", text="Nice to meet you, Ada.", at=started + 7,
                    member="agent"),
    ]  # fmt: skip
    checkpoint = build_checkpoint(
        member="agent",
        initiated_at=started - 2,
        started_at=started,
        usage=_usage(tokens=100, seconds=20.0),
        handoffs=[],
        history=history,
        resumes=1,
    )
    metadata = with_resume(web_spec(), Resume(attempt=1, sequence=9, checkpoint=checkpoint))
    spec, resume = split_resume(metadata)
    job = FakeJob(participant=None)  # wait_for_participant would hang: a resume must not wait
    job.room = RoomWithCaller("room-call-test")  # type: ignore[assignment]
    job.room.remote_participants["browser-1"] = Present(
        "browser-1", rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    )
    room = TextRoom(job)
    replies = [Reply("Of course, Ada. Your balance is zero.")]
    scripted = Scripted(replies)
    llms: list[ScriptedLLM] = []

    def factory(agent: Any, settings: Any) -> Pipeline:
        pipeline = scripted(agent, settings)
        assert isinstance(pipeline.llm, ScriptedLLM)
        llms.append(pipeline.llm)
        return pipeline

    call = WorkerCall(
        job,
        spec,
        resources(defs, tmp_path, resume_apology="Sorry, I lost you for a moment."),
        pipeline_factory=factory,
        start_session=room,
        clock=clock,
        resume=resume,
    )
    await call.run()
    await asyncio.wait_for(room.started.wait(), TIMEOUT)
    assert room.session is not None
    await assistant_said(room.session, "Sorry, I lost you for a moment.")
    clock.now += 10
    await room.session.run(user_input="What is my name?")
    await assistant_said(room.session, "Of course, Ada")
    clock.now += 5
    room.caller_leaves()
    await job.finished()

    [request] = [r for m in llms for r in m.requests]  # one turn: the apology is no LLM reply
    said = [str(m.get("content")) for m in request.messages]
    assert any("My name is Ada." in text for text in said)  # the history survived
    assert any("What is my name?" in text for text in said)
    events = reported(tmp_path)
    assert events[0].sequence == 10  # after the newest event the control plane had
    assert all(e.status != "initiated" for e in events)  # the call was active all along
    assert events[0].type == "call.progress" and events[0].detail == "resumed"
    final = ended(events)
    assert (final.status, final.ended_reason) == ("completed", "customer_hangup")
    assert final.duration_seconds == 55.0  # 40 s before the death + 15 s after
    assert [t.text for t in final.transcript or []][:4] == [
        "Hi, thanks for calling.",
        "My name is Ada.",
        "Nice to meet you, Ada.",
        "Sorry, I lost you for a moment.",
    ]
    llm_usage = [u for u in final.usage if u.kind == "llm"]
    assert sum(u.input_tokens for u in llm_usage) > 100  # before + after the resume
    stt = [u for u in final.usage if u.kind == "stt"]
    assert sum(u.audio_seconds for u in stt) >= 20.0
    assert final.checkpoint is None  # never in call.ended
    progress = [e for e in events if e.type == "call.progress"]
    assert all(e.checkpoint is not None for e in progress)
    newest = progress[-1].checkpoint
    assert newest is not None and newest.resumes == 1 and newest.started_at == started
