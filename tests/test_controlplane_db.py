"""The control plane's storage on SQLite and on a real PostgreSQL.

Every test runs against both backends. PostgreSQL needs ``CONVOI_TEST_POSTGRES_URL`` (a server
where the user may create databases; each test gets a fresh one)::

    export CONVOI_TEST_POSTGRES_URL="$(scripts/postgres start)"
    .venv/bin/pytest tests/test_controlplane_db.py
    scripts/postgres stop
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from convoi.controlplane import ControlPlaneSettings, create_app, idempotency
from convoi.controlplane.calls import IN_PROGRESS_STATUSES, in_progress_count
from convoi.controlplane.db import (
    Account,
    Base,
    Call,
    CallEventRecord,
    Database,
    current_revision,
    head_revision,
    upgrade_to_head,
    utcnow,
)
from convoi.controlplane.db.migrate import alembic_config
from convoi.controlplane.errors import (
    AuthenticationFailed,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
)
from convoi.controlplane.events import SqlEventStore
from convoi.controlplane.keys import authenticate, create_key, hash_key
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from convoi.reporting.events import CallEvent
from tests.helpers import REPO, make_event

POSTGRES_ENV = "CONVOI_TEST_POSTGRES_URL"
TABLES = {"accounts", "api_keys", "calls", "idempotency_keys", "call_events"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/controlplane.sqlite3"
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(
            f"{POSTGRES_ENV} is not set: start a throwaway server with "
            f'`export {POSTGRES_ENV}="$(scripts/postgres start)"`'
        )
    admin_url = make_url(server).set(drivername="postgresql+psycopg")
    name = f"convoi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The database, migrated to head."""
    db = Database(database_url)
    upgrade_to_head(db)
    yield db
    db.dispose()


def add_call(database: Database, call_id: str = "call_01HXTESTCALL00000000000000") -> str:
    with database.session() as session:
        session.add(Account(id="acct_demo"))
        session.add(
            Call(
                id=call_id,
                account_id="acct_demo",
                type="web",
                status="initiated",
                room_id=call_id,
                callspec="{}",
                call_metadata={"source": "test"},
            )
        )
        session.commit()
    return call_id


def event(call_id: str, sequence: int, status: str, cost: str = "0", **fields: object) -> CallEvent:
    """:func:`tests.helpers.make_event` with ``status`` and ``cost`` up front and no metadata."""
    values: dict[str, object] = {"created_at": 1_780_000_000.0, "metadata": None, **fields}
    return make_event(call_id, sequence, status=status, cost={"amount": cost}, **values)


# ------------------------------------------------------------------------ migrations


def test_alembic_upgrade_from_empty_matches_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert current_revision(db) is None
        assert upgrade_to_head(db) == head_revision() == "0006_calls_in_progress_index"
        assert set(inspect(db.engine).get_table_names()) >= TABLES
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        assert upgrade_to_head(db) == "0006_calls_in_progress_index"  # idempotent
        command.downgrade(alembic_config(db), "base")
        assert not TABLES & set(inspect(db.engine).get_table_names())
        assert upgrade_to_head(db) == "0006_calls_in_progress_index"
    finally:
        db.dispose()


# ------------------------------------------------------------------------ keys


def test_keys_are_hashed_and_authenticate(database: Database) -> None:
    with database.session() as session:
        key = create_key(session, "acct_demo", "sk_live")
        principal = authenticate(session, "Bearer", key)
        assert (principal.account_id, principal.kind) == ("acct_demo", "sk_live")
        assert authenticate(session, "bearer", key) == principal
        with database.engine.connect() as connection:
            rows = connection.execute(text("SELECT key_hash, display_prefix FROM api_keys")).all()
        assert rows == [(hash_key(key), key[:12])]
        with pytest.raises(AuthenticationFailed):
            authenticate(session, "Bearer", key + "0")
        with pytest.raises(AuthenticationFailed):
            authenticate(session, "Basic", key)
        session.execute(text("UPDATE api_keys SET revoked_at = created_at"))
        session.commit()
        with pytest.raises(AuthenticationFailed):
            authenticate(session, "Bearer", key)


# ------------------------------------------------------------------------ idempotency


def test_idempotency_claim_replay_conflict_and_expiry(database: Database) -> None:
    with database.session() as session:
        session.add(Account(id="acct_demo"))
        session.commit()
        digest = idempotency.canonical_hash({"b": 1, "a": [1, "é"]})
        assert digest == idempotency.canonical_hash({"a": [1, "é"], "b": 1})
        claimed = idempotency.claim(session, "acct_demo", "k1", digest)
        assert isinstance(claimed, idempotency.Claim)
        with pytest.raises(IdempotencyKeyInUse):
            idempotency.claim(session, "acct_demo", "k1", digest)
        idempotency.complete(session, claimed, 201, '{"id": "call_x"}', "call_x")
        assert idempotency.claim(session, "acct_demo", "k1", digest) == idempotency.Replay(
            201, '{"id": "call_x"}'
        )
        with pytest.raises(IdempotencyKeyReused):
            idempotency.claim(session, "acct_demo", "k1", idempotency.canonical_hash({}))
        later = utcnow() + timedelta(hours=24, seconds=1)
        again = idempotency.claim(session, "acct_demo", "k1", digest, now=later)
        assert isinstance(again, idempotency.Claim)
        idempotency.release(session, again)
        stale = idempotency.claim(session, "acct_demo", "k2", digest)
        assert isinstance(stale, idempotency.Claim)
        takeover = utcnow() + idempotency.LOCK_TIMEOUT + timedelta(seconds=1)
        assert idempotency.claim(session, "acct_demo", "k2", digest, now=takeover) == stale
        assert idempotency.purge_expired(session, now=utcnow() + timedelta(days=2)) == 1


@pytest.mark.parametrize("commit", [True, False], ids=["claim-commits", "caller-commits"])
def test_concurrent_claims_of_one_key_let_one_request_through(
    database: Database, commit: bool
) -> None:
    """``commit=False`` (a create claims, reads and inserts in one transaction): the others
    wait for that transaction on the key's unique index, then find the claim."""
    with database.session() as session:
        session.add(Account(id="acct_demo"))
        session.commit()
    outcomes: list[object] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        with database.session() as session:
            barrier.wait()
            try:
                claim = idempotency.claim(session, "acct_demo", "race", "h" * 64, commit=commit)
                session.add(Account(id=f"acct_{uuid.uuid4().hex}"))  # the rest of its work
                session.commit()
                outcomes.append(claim)
            except IdempotencyKeyInUse as exc:
                outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 6
    assert sum(isinstance(o, idempotency.Claim) for o in outcomes) == 1


# ------------------------------------------------------------------------ events


def test_events_apply_by_sequence_and_keep_exact_costs(database: Database) -> None:
    call_id = add_call(database)
    with database.session() as session:
        store = SqlEventStore(session)
        active = event(call_id, 2, "active", "0.000000123", duration_seconds=1.5)
        assert store.record(active, active.model_dump_json()) == "stored"
        assert store.record(active, active.model_dump_json()) == "duplicate"
        late = event(call_id, 1, "ringing", "0", metadata={"late": True})
        assert store.record(late, late.model_dump_json()) == "stored"
        call = session.get(Call, call_id)
        assert call is not None
        session.refresh(call)
        assert (call.status, call.cost_amount, call.duration_seconds) == (
            "active",
            "0.000000123",
            1.5,
        )
        assert call.call_metadata == {"source": "test"}
        ended = event(
            call_id, 3, "completed", "12.3456789012345678", ended_reason="agent_hangup",
            fault=None, metadata={"source": "test", "n": [1, 2]},
        )  # fmt: skip
        assert store.record(ended, ended.model_dump_json()) == "stored"
        session.refresh(call)
        assert (call.status, call.ended_reason, call.last_event_sequence) == (
            "completed",
            "agent_hangup",
            3,
        )
        assert call.cost_amount == "12.3456789012345678"
        assert call.call_metadata == {"source": "test", "n": [1, 2]}
        assert call.updated_at.tzinfo is not None and call.updated_at.utcoffset() == timedelta(0)
        rows = session.scalars(select(CallEventRecord).order_by(CallEventRecord.sequence)).all()
        assert [(r.sequence, r.duplicates) for r in rows] == [(1, 0), (2, 1), (3, 0)]
        assert json.loads(rows[1].body)["cost"]["amount"] == "0.000000123"
        assert rows[0].received_at.tzinfo == UTC


# ------------------------------------------------------------------------ the API on this backend


def test_api_round_trip(database_url: str) -> None:
    settings = ControlPlaneSettings(
        CONVOI_DATABASE_URL=database_url,
        CONVOI_CONFIG_DIR=REPO / "agents_config",
        CONVOI_EVENTS_SECRET="db-test-secret",
    )
    gateway = FakeLiveKitGateway()
    app = create_app(settings, gateway)
    with TestClient(app) as client:  # start-up migrates the empty database
        with app.state.convoi.database.session() as session:
            key = create_key(session, "acct_demo", "sk_live")
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "round-trip"}
        body = {
            "type": "outbound_phone",
            "agent_id": "sqd_3fa85f6457174562b3fc2c963f66afa6",
            "customer": {"number": "+971501234567", "name": "Ahmed"},
            "phone_number_id": "phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7",
            "metadata": {"campaign": "may-outreach"},
        }
        created = client.post("/api/v1/public/calls", json=body, headers=headers)
        assert created.status_code == 201, created.text
        replay = client.post("/api/v1/public/calls", json=body, headers=headers)
        assert replay.content == created.content and len(gateway.dispatches) == 1
        call_id = created.json()["id"]

        from convoi.devstack.controlplane_fakes import signed_event

        payload, signed = signed_event(
            "db-test-secret", call_id, 1, "completed", duration_seconds=61.0, cost="0.25",
            ended_reason="customer_hangup",
        )  # fmt: skip
        url = f"/internal/v1/calls/{call_id}/events"
        assert client.post(url, content=payload, headers=signed).status_code == 201
        got = client.get(f"/api/v1/public/calls/{call_id}", headers=headers).json()
    assert (got["status"], got["ended_reason"], got["duration_seconds"]) == (
        "completed",
        "customer_hangup",
        61.0,
    )
    assert {k: got["cost"][k] for k in ("amount", "currency")} == {
        "amount": 0.25,
        "currency": "USD",
    }
    assert (got["agent_id"], got["squad_id"]) == (None, "sqd_3fa85f6457174562b3fc2c963f66afa6")
    assert got["metadata"] == {"campaign": "may-outreach"}


# ------------------------------------------------------------------------ admission


def test_counting_calls_in_progress_reads_them_alone_by_index(tmp_path: Path) -> None:
    """The concurrency limit's count on every create: by (account, status), so it visits the
    calls in progress, not every call the account ever made (SQLite's plan, which uses the
    index whatever the table's size; PostgreSQL's planner may scan a small table instead)."""
    database = Database(f"sqlite:///{tmp_path}/plan.sqlite3")
    upgrade_to_head(database)
    statement = in_progress_count("acct_demo")
    sql = str(statement.compile(database.engine, compile_kwargs={"literal_binds": True}))
    with database.session() as session:
        plan = " ".join(str(row[-1]) for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        session.add(Account(id="acct_demo"))
        session.commit()
        assert session.scalar(statement) == 0
    assert "ix_calls_account_id_status" in plan, plan
    assert set(IN_PROGRESS_STATUSES) == {"initiated", "ringing", "active"}
