"""Call leases: a call whose worker went silent is ended ``failed`` / ``worker_lost``, its room
deleted, and a late real ending does not overwrite that (the first terminal event wins)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from convoi.controlplane import create_app
from convoi.controlplane.db.models import Call, CallEventRecord, utcnow
from convoi.controlplane.keys import create_key
from convoi.controlplane.leases import LeaseKeeper, Leases
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from tests.fixtures.seed_examples import OUTBOUND_FULL, WEB_MINIMAL
from tests.test_controlplane_api import Api, make_settings
from tests.test_controlplane_api import api as api  # the fixture (re-exported by its name)

LEASES = Leases(active=60.0, starting=180.0)


def _silent_for(api: Api, call_id: str, seconds: float, status: str | None = None) -> None:
    """Pretend the call's last event arrived ``seconds`` ago (and left it in ``status``)."""
    values: dict[str, object] = {"updated_at": utcnow() - timedelta(seconds=seconds)}
    if status is not None:
        values["status"] = status
    with api.database.session() as session:
        session.execute(update(Call).where(Call.id == call_id).values(**values))
        session.commit()


def _sweep(api: Api) -> list[str]:
    keeper = LeaseKeeper(api.database, api.gateway, LEASES)
    return [c.call_id for c in asyncio.run(keeper.sweep())]


def _create(api: Api, example: object) -> dict[str, object]:
    return dict(api.create(json.loads(example.text())).json())  # type: ignore[attr-defined]


def test_an_active_call_whose_worker_went_silent_ends_worker_lost(api: Api) -> None:
    call = _create(api, WEB_MINIMAL)
    call_id = str(call["id"])
    api.event(call_id, 1, "active", event_type="call.progress", duration_seconds=12.5, cost="0.02")
    _silent_for(api, call_id, 59)
    assert _sweep(api) == []  # still within its lease
    _silent_for(api, call_id, 61)
    assert _sweep(api) == [call_id]

    got = api.get(call_id).json()
    assert (got["status"], got["ended_reason"], got["fault"]) == (
        "failed",
        "worker_lost",
        "platform",
    )
    assert "no event from the worker for 61 s" in got["detail"]
    assert (got["duration_seconds"], got["cost"]["amount"]) == (12.5, 0.02)  # last reported
    assert api.gateway.deleted_rooms == [call["room_id"]]
    with api.database.session() as session:
        records = session.scalars(
            select(CallEventRecord).where(CallEventRecord.call_id == call_id)
        ).all()
    ended = [json.loads(r.body) for r in records if r.type == "call.ended"]
    assert [(e["sequence"], e["ended_reason"]) for e in ended] == [(2, "worker_lost")]
    assert _sweep(api) == []  # ended once


def test_a_call_nobody_took_or_that_died_ringing_has_the_longer_start_lease(api: Api) -> None:
    waiting = str(_create(api, WEB_MINIMAL)["id"])
    ringing = str(_create(api, OUTBOUND_FULL)["id"])
    api.event(ringing, 1, "ringing")
    _silent_for(api, waiting, 120)
    _silent_for(api, ringing, 120)
    assert _sweep(api) == []  # a phone may ring for up to two minutes
    _silent_for(api, ringing, 181)
    assert _sweep(api) == [ringing]
    assert api.get(ringing).json()["ended_reason"] == "worker_lost"
    assert api.get(waiting).json()["status"] == "initiated"


def test_ended_calls_are_never_expired(api: Api) -> None:
    call_id = str(_create(api, WEB_MINIMAL)["id"])
    api.event(call_id, 1, "active")
    api.event(call_id, 2, "completed", event_type="call.ended", ended_reason="customer_hangup")
    _silent_for(api, call_id, 3600)
    assert _sweep(api) == []
    assert api.get(call_id).json()["ended_reason"] == "customer_hangup"


def test_the_first_terminal_event_wins(api: Api) -> None:
    call_id = str(_create(api, WEB_MINIMAL)["id"])
    api.event(call_id, 1, "active", duration_seconds=5.0)
    _silent_for(api, call_id, 90)
    assert _sweep(api) == [call_id]
    # the worker was alive after all: its real ending arrives late, is stored, changes nothing
    late = api.event(
        call_id, 7, "completed", event_type="call.ended", ended_reason="customer_hangup",
        duration_seconds=95.0, cost="0.5",
    )  # fmt: skip
    assert late.status_code == 201 and late.json()["status"] == "stored"
    got = api.get(call_id).json()
    assert (got["status"], got["ended_reason"], got["duration_seconds"]) == (
        "failed",
        "worker_lost",
        5.0,
    )


def test_the_ending_call_ended_still_completes_its_own_call_status(api: Api) -> None:
    call_id = str(_create(api, WEB_MINIMAL)["id"])
    api.event(call_id, 1, "active")
    api.event(call_id, 2, "completed", ended_reason="agent_hangup", duration_seconds=30.0)
    api.event(
        call_id, 3, "completed", event_type="call.ended", ended_reason="agent_hangup",
        duration_seconds=30.0, cost="0.25",
    )  # fmt: skip
    other = api.event(call_id, 4, "failed", event_type="call.ended", ended_reason="worker_error")
    assert other.status_code == 201
    got = api.get(call_id).json()
    assert (got["status"], got["ended_reason"], got["cost"]["amount"]) == (
        "completed",
        "agent_hangup",
        0.25,
    )


def test_the_api_process_sweeps_by_itself(tmp_path: Path) -> None:
    gateway = FakeLiveKitGateway()
    settings = make_settings(tmp_path, CONVOI_CALL_LEASE_SECONDS=5)
    app = create_app(settings, gateway)
    with TestClient(app) as client:
        with app.state.convoi.database.session() as session:
            keys = {"sk": create_key(session, "acct_demo", "sk_live")}
        running = Api(client, gateway, keys)
        call_id = str(_create(running, WEB_MINIMAL)["id"])
        running.event(call_id, 1, "active")
        _silent_for(running, call_id, 30)

        deadline = time.monotonic() + 30  # the keeper sweeps every second with a 5 s lease
        while (got := running.get(call_id).json())["status"] == "active":
            assert time.monotonic() < deadline, "the app never swept the silent call"
            time.sleep(0.1)  # polling GET, as a customer would
        assert (got["status"], got["ended_reason"]) == ("failed", "worker_lost")
        assert gateway.deleted_rooms == [got["room_id"]]
