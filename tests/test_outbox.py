"""The SQLite outbox: durable adds, idempotency, per-call sequences, due order, multi-process."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from convoi.reporting.outbox import Outbox
from tests.helpers import make_event


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.sqlite3"


def test_file_is_wal_with_full_sync(path: Path) -> None:
    with Outbox(path) as outbox:
        assert outbox._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_add_is_durable_across_reopen(path: Path) -> None:
    event = make_event("call_a", 1)
    with Outbox(path) as outbox:
        outbox.add(event)
    with Outbox(path) as reopened:
        assert reopened.pending_count() == 1
        (pending,) = reopened.due(now=0.0)
        assert pending.event_id == event.id
        assert pending.body == event.model_dump_json()
        assert pending.event() == event
        assert pending.attempts == 0


def test_add_is_visible_to_another_connection_immediately(path: Path) -> None:
    event = make_event("call_a", 1)
    with Outbox(path) as outbox:
        outbox.add(event)
        other = sqlite3.connect(path)
        assert other.execute("SELECT id FROM outbox").fetchall() == [(event.id,)]
        other.close()


def test_add_is_idempotent_on_event_id(path: Path) -> None:
    event = make_event("call_a", 1)
    with Outbox(path) as outbox:
        outbox.add(event)
        outbox.add(event)
        outbox.mark_delivered(event.id)
        outbox.add(event)  # already delivered: stays delivered, not re-queued
        assert outbox.pending_count() == 0


def test_same_sequence_under_another_id_is_refused(path: Path) -> None:
    with Outbox(path) as outbox:
        outbox.add(make_event("call_a", 1))
        with pytest.raises(ValueError, match="sequence 1"):
            outbox.add(make_event("call_a", 1))
        assert outbox.pending_count() == 1


def test_sequences_increase_per_call_independently_and_survive_reopen(path: Path) -> None:
    with Outbox(path) as outbox:
        assert [outbox.next_sequence("call_a") for _ in range(3)] == [1, 2, 3]
        assert [outbox.next_sequence("call_b") for _ in range(2)] == [1, 2]
        assert outbox.next_sequence("call_a") == 4
    with Outbox(path) as reopened:
        assert reopened.next_sequence("call_a") == 5
        assert reopened.next_sequence("call_b") == 3
        assert reopened.next_sequence("call_c") == 1


def test_adding_an_event_raises_the_sequence_counter(path: Path) -> None:
    with Outbox(path) as outbox:
        outbox.add(make_event("call_a", 7))
        assert outbox.next_sequence("call_a") == 8


def _allocate(path: str, call_ids: list[str], count: int, start, results) -> None:  # type: ignore[no-untyped-def]
    outbox = Outbox(path)
    start.wait(30)
    allocated = [
        (call_id, outbox.next_sequence(call_id)) for _ in range(count) for call_id in call_ids
    ]
    outbox.close()
    results.put(allocated)


def test_concurrent_allocation_from_two_processes_never_duplicates(path: Path) -> None:
    Outbox(path).close()  # create the file and schema first
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    calls = ["call_a", "call_b"]
    procs = [
        ctx.Process(target=_allocate, args=(str(path), calls, 150, start, results))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    start.set()
    outputs = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    for call_id in calls:
        merged: list[int] = []
        for output in outputs:
            mine = [seq for cid, seq in output if cid == call_id]
            assert mine == sorted(mine) and len(set(mine)) == len(mine)  # increasing per process
            merged.extend(mine)
        assert sorted(merged) == list(range(1, 301))  # no duplicate, no gap
    with Outbox(path) as outbox:
        assert outbox.next_sequence("call_a") == 301


def test_due_respects_next_attempt_at_and_orders_by_call_then_sequence(path: Path) -> None:
    with Outbox(path) as outbox:
        b2, a1, b1, a2 = (
            make_event("call_b", 2),
            make_event("call_a", 1),
            make_event("call_b", 1),
            make_event("call_a", 2),
        )
        for event in (b2, a1, b1, a2):
            outbox.add(event)
        assert [p.event_id for p in outbox.due(now=100.0)] == [a1.id, a2.id, b1.id, b2.id]
        assert [p.event_id for p in outbox.due(now=100.0, limit=3)] == [a1.id, a2.id, b1.id]

        assert outbox.mark_failed(b1.id, "HTTP 500: boom", next_attempt_at=200.0) == (1, 0)
        # call_b's seq 2 waits behind its seq 1, which is backing off until 200
        assert [p.event_id for p in outbox.due(now=150.0)] == [a1.id, a2.id]
        assert outbox.next_attempt_at() == 0.0
        outbox.mark_delivered(a1.id)
        outbox.mark_delivered(a2.id)
        assert outbox.next_attempt_at() == 200.0  # b2 is blocked, only b1's time counts
        assert outbox.due(now=199.0) == []
        assert [p.event_id for p in outbox.due(now=200.0)] == [b1.id, b2.id]

        failed = outbox.get(b1.id)
        assert failed is not None
        assert (failed.attempts, failed.last_error) == (1, "HTTP 500: boom")
        assert outbox.mark_failed(b1.id, "timeout", next_attempt_at=300.0) == (2, 0)
        outbox.mark_delivered(b1.id)
        outbox.mark_delivered(b2.id)
        assert outbox.pending_count() == 0
        assert outbox.next_attempt_at() is None
        delivered = outbox.get(b1.id)
        assert delivered is not None and delivered.delivered_at is not None
        assert delivered.attempts == 3
        assert outbox.mark_failed(b1.id, "late", next_attempt_at=400.0) == (
            0,
            0,
        )  # no un-delivering


def test_claim_leases_events_until_released(path: Path) -> None:
    with Outbox(path) as outbox, Outbox(path) as other_process:
        e1, e2 = make_event("call_a", 1), make_event("call_a", 2)
        outbox.add(e1)
        outbox.add(e2)
        assert [p.event_id for p in outbox.claim(now=10.0, limit=10, lease=60.0)] == [e1.id, e2.id]
        assert other_process.claim(now=20.0, limit=10, lease=60.0) == []
        outbox.release([e2.id], next_attempt_at=20.0)
        assert other_process.claim(now=20.0, limit=10, lease=60.0) == []  # e1 still leased
        outbox.mark_delivered(e1.id)
        assert [p.event_id for p in other_process.claim(now=20.0, limit=10, lease=60.0)] == [e2.id]
        # an expired lease (crashed sender) makes the event due again
        assert [p.event_id for p in outbox.claim(now=81.0, limit=10, lease=60.0)] == [e2.id]


def test_purge_delivered(path: Path) -> None:
    with Outbox(path) as outbox:
        old, pending = make_event("call_a", 1), make_event("call_a", 2)
        outbox.add(old)
        outbox.add(pending)
        outbox.mark_delivered(old.id, now=100.0)
        assert outbox.purge_delivered(before=50.0) == 0
        assert outbox.purge_delivered(before=101.0) == 1
        assert outbox.get(old.id) is None
        assert outbox.pending_count() == 1
