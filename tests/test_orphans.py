"""A call whose job process died is ended by the worker's main process (failed/worker_error)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from convoi.reporting.orphans import end_orphaned_call
from convoi.reporting.outbox import Outbox
from convoi.worker.supervision import call_of_job
from tests.helpers import make_event

CALL = "call_0123456789abcdef"


def test_an_active_call_is_ended_with_its_duration_up_to_the_death(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        metadata = {"campaign": "crash"}
        outbox.add(make_event(CALL, 1, status="initiated", metadata=metadata))
        outbox.add(make_event(CALL, 2, status="active", metadata=metadata))
        progress = make_event(
            CALL, 3, status="active", type="call.progress", duration_seconds=20.0,
            cost={"amount": "0.031"}, metadata=metadata, created_at=1_000.0,
        )  # fmt: skip
        outbox.add(progress)
        ended = end_orphaned_call(outbox, CALL, why="the job process died (-9)", now=1_004.5)
        assert ended is not None
        assert (ended.type, ended.sequence, ended.status, ended.ended_reason, ended.fault) == (
            "call.ended",
            5,
            "failed",
            "worker_error",
            "platform",
        )
        assert ended.duration_seconds == 24.5  # live until it died, 4.5 s after the progress
        assert ended.cost.amount == Decimal("0.031")  # as of the last progress event
        assert ended.metadata == metadata
        assert ended.detail is not None and ended.detail.startswith("the job process died (-9)")
        status = outbox.latest(CALL)
        assert status is not None and status.id == ended.id
        pending = [(p.sequence, p.type) for p in outbox.due(limit=10)]
        assert pending[-2:] == [(4, "call.status"), (5, "call.ended")]
        # the main process sees the same process close once; a second look changes nothing
        assert end_orphaned_call(outbox, CALL, why="again", now=1_010.0) is None


def test_a_call_that_had_ended_is_left_alone(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        outbox.add(make_event(CALL, 1, status="initiated"))
        outbox.add(make_event(CALL, 2, status="completed", type="call.ended"))
        assert end_orphaned_call(outbox, CALL, why="exited", now=2_000.0) is None
        assert [p.sequence for p in outbox.due(limit=10)] == [1, 2]


def test_a_call_that_never_reported_is_ended_with_the_callspec_metadata(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        ended = end_orphaned_call(
            outbox, CALL, why="died at start", now=3_000.0, metadata={"user_ref": "u_1"}
        )
        assert ended is not None
        assert (ended.sequence, ended.status, ended.duration_seconds) == (2, "failed", 0.0)
        assert ended.metadata == {"user_ref": "u_1"} and ended.cost.amount == 0


def test_the_call_of_a_job_comes_from_its_dispatch_metadata() -> None:
    spec = {"call_id": CALL, "type": "web", "metadata": {"a": 1}}
    assert call_of_job(json.dumps(spec)) == (CALL, {"a": 1})
    assert call_of_job(json.dumps({**spec, "metadata": "x"})) == (CALL, None)
    for bad in ("", "not json", "[]", json.dumps({"call_id": "nope"}), json.dumps({"type": 1})):
        assert call_of_job(bad) is None
