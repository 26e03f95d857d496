"""Several API processes on one database: what must happen once happens once.

- two real ``convoi-api`` OS processes on one PostgreSQL, the same Idempotency-Key raced at both:
  exactly one call (and one dispatch) per key, and every answer for a key is the same call;
- two API processes admit no more calls than the account's concurrency limit (a database lock);
- with ``CONVOI_REDIS_URL`` two API processes share one rate limit (without it each counts its
  own); Redis unreachable: requests are still answered (never 5xx), counted per process, and one
  clear log line says so;
- ``serve --processes 2`` on PostgreSQL: a burst of 200 clients gets no 5xx, every create once;
- the call lease sweep and the concurrency admission hold their database lock across sessions
  (what another process would use).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.locks import lock_account, namespace_id, try_exclusive
from convoi.controlplane.db.migrate import upgrade_to_head
from convoi.controlplane.db.models import Call, utcnow
from convoi.controlplane.errors import TooManyRequests
from convoi.controlplane.keys import create_key
from convoi.controlplane.leases import SWEEP_LOCK, Leases, expire_calls
from convoi.controlplane.redis_limits import RedisRateLimiter
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.devstack.api_processes import ApiProcess, FakeLiveKitProcess, free_port
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from convoi.devstack.controlplane_harness import ControlPlaneServer
from convoi.devstack.loadtest import drive, postgres_database, web_call_body
from convoi.devstack.sip_stack import RedisServer
from tests.helpers import REPO

CALLS = "/api/v1/public/calls"
AGENT = "agt_b88d642dd68747f28305c428b209xxxx"
SECRET = "scale-test-events-secret"
WAIT = 60.0


def api_env(database_url: str, **extra: Any) -> dict[str, str]:
    values: dict[str, Any] = {
        "CONVOI_DATABASE_URL": database_url,
        "CONVOI_CONFIG_DIR": REPO / "agents_config",
        "CONVOI_EVENTS_SECRET": SECRET,
        "CONVOI_RATE_LIMIT_SK_PER_MINUTE": 0,
        "CONVOI_MAX_CONCURRENT_CALLS": 0,
        "CONVOI_CALL_LEASE_SECONDS": 3600,
        "CONVOI_CALL_START_LEASE_SECONDS": 3600,
        **extra,
    }
    return {name: str(value) for name, value in values.items()}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def mint_key(database_url: str, account: str, kind: Any = "sk_live") -> str:
    database = Database(database_url)
    try:
        upgrade_to_head(database)
        with database.session() as session:
            return create_key(session, account, kind)
    finally:
        database.dispose()


def count_calls(database_url: str) -> int:
    database = Database(database_url)
    try:
        with database.session() as session:
            return int(session.scalar(select(func.count()).select_from(Call)) or 0)
    finally:
        database.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    server = os.environ.get("CONVOI_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("CONVOI_TEST_POSTGRES_URL is not set (scripts/postgres start)")
    with postgres_database(server) as url:
        yield url


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(workdir=tmp_path / "redis").start()
    try:
        yield f"redis://{server.address}/0"
    finally:
        server.stop()


@pytest.fixture
def livekit(tmp_path: Path) -> Iterator[FakeLiveKitProcess]:
    with FakeLiveKitProcess(tmp_path, latency_ms=20) as fake:
        yield fake


# ------------------------------------------------------------------ two OS processes


def _race(urls: list[str], key: str, keys: int, copies: int) -> dict[str, list[httpx.Response]]:
    """``copies`` concurrent POSTs per Idempotency-Key over ``urls``; a 409 (the first still
    running) is retried until the key answers 201. Returns the final answers per key."""

    async def one(client: httpx.AsyncClient, url: str, idem: str, n: int) -> httpx.Response:
        headers = {**auth(key), "Idempotency-Key": idem}
        for _ in range(200):
            answer = await client.post(url + CALLS, json=web_call_body(AGENT, n), headers=headers)
            if answer.status_code != 409:
                return answer
            await asyncio.sleep(0.05)  # the client's retry back-off, as Retry-After advises
        return answer

    async def run() -> dict[str, list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=WAIT) as client:
            idems = [str(uuid.uuid4()) for _ in range(keys)]
            tasks = [
                one(client, urls[c % len(urls)], idem, n)
                for n, idem in enumerate(idems)
                for c in range(copies)
            ]
            answers = await asyncio.gather(*tasks)
        by_key: dict[str, list[httpx.Response]] = {}
        for answer in answers:
            by_key.setdefault(answer.request.headers["Idempotency-Key"], []).append(answer)
        return by_key

    return asyncio.run(run())


@pytest.mark.server
@pytest.mark.postgres
def test_two_api_processes_race_one_idempotency_key_into_one_call(
    tmp_path: Path, postgres_url: str, livekit: FakeLiveKitProcess
) -> None:
    key = mint_key(postgres_url, "acct_race")
    env = api_env(postgres_url)
    with (
        ApiProcess(tmp_path, env, livekit) as first,
        ApiProcess(tmp_path, env, livekit) as second,
    ):
        by_key = _race([first.url, second.url], key, keys=30, copies=4)
        assert len(by_key) == 30
        ids = set()
        for answers in by_key.values():
            assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
            assert len({a.text for a in answers}) == 1  # the same answer, byte for byte
            assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 3
            ids.add(answers[0].json()["id"])
        ports = {a.request.url.port for answers in by_key.values() for a in answers}
        assert ports == {first.port, second.port}  # both processes answered
    assert len(ids) == 30 and count_calls(postgres_url) == 30
    assert sorted(livekit.dispatch_rooms()) == sorted(ids)  # dispatched once each


@pytest.mark.server
@pytest.mark.postgres
def test_two_api_processes_admit_no_more_than_the_concurrency_limit(
    tmp_path: Path, postgres_url: str, livekit: FakeLiveKitProcess
) -> None:
    key = mint_key(postgres_url, "acct_limit")
    env = api_env(postgres_url, CONVOI_MAX_CONCURRENT_CALLS=5)

    async def burst(urls: list[str]) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=WAIT) as client:
            posts = [
                client.post(urls[n % 2] + CALLS, json=web_call_body(AGENT, n), headers=auth(key))
                for n in range(24)
            ]
            return list(await asyncio.gather(*posts))

    with (
        ApiProcess(tmp_path, env, livekit) as first,
        ApiProcess(tmp_path, env, livekit) as second,
    ):
        answers = asyncio.run(burst([first.url, second.url]))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 5 + [429] * 19, [a.text for a in answers]
    refused = [a.json()["error"]["code"] for a in answers if a.status_code == 429]
    assert set(refused) == {"concurrency_limit"}
    assert count_calls(postgres_url) == 5


def _allowed(urls: list[str], key: str, n: int) -> list[int]:
    """``n`` GETs alternating over ``urls``: the statuses."""
    statuses = []
    with httpx.Client(timeout=WAIT) as client:
        for i in range(n):
            url = f"{urls[i % len(urls)]}{CALLS}/call_nothing"
            statuses.append(client.get(url, headers=auth(key)).status_code)
    return statuses


@pytest.mark.server
@pytest.mark.postgres
def test_two_api_processes_share_one_rate_limit_in_redis(
    tmp_path: Path, postgres_url: str, redis_url: str, livekit: FakeLiveKitProcess
) -> None:
    key = mint_key(postgres_url, "acct_rate", "pk_live")
    env = api_env(postgres_url, CONVOI_RATE_LIMIT_PK_PER_MINUTE=4, CONVOI_REDIS_URL=redis_url)
    with (
        ApiProcess(tmp_path, env, livekit) as first,
        ApiProcess(tmp_path, env, livekit) as second,
    ):
        statuses = _allowed([first.url, second.url], key, 8)
        shared = _allowed([first.url, second.url], mint_key(postgres_url, "acct_other"), 2)
    # 4 per minute for the key, whichever process answers (a refill is 15 s away); each process
    # counting alone would have allowed all 8
    assert statuses[:4] == [404] * 4, statuses
    assert statuses[4:].count(429) >= 3, statuses
    assert 429 in statuses[4::2] and 429 in statuses[5::2]  # refused by both processes
    assert shared == [404, 404]  # another key has its own bucket


@pytest.mark.server
def test_redis_unreachable_counts_in_process_with_one_clear_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = ControlPlaneSettings(
        **{  # type: ignore[arg-type]
            **api_env(f"sqlite:///{tmp_path}/cp.sqlite3"),
            "CONVOI_REDIS_URL": dead,
            "CONVOI_RATE_LIMIT_PK_PER_MINUTE": "3",
        }
    )
    caplog.set_level(logging.WARNING, logger="convoi.controlplane")
    with ControlPlaneServer(settings, FakeLiveKitGateway()) as server:
        key = server.create_key("acct_dead", "pk_live")
        statuses = _allowed([server.url], key, 5)
    assert statuses == [404, 404, 404, 429, 429]  # never 5xx; the budget still holds here
    lines = [r.getMessage() for r in caplog.records if "Redis" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "unreachable" in lines[0] and dead.split("//")[1].split("/")[0] in lines[0]


@pytest.mark.server
def test_redis_buckets_are_one_budget_for_two_limiters(redis_url: str) -> None:
    async def run() -> list[str]:
        limiters = [RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)]
        outcomes = []
        try:
            for i in range(8):
                try:
                    await limiters[i % 2].acquire("key_shared", 5)
                    outcomes.append("ok")
                except TooManyRequests as refused:
                    assert refused.code == "rate_limited" and (refused.retry_after or 0) >= 1
                    outcomes.append("429")
        finally:
            for limiter in limiters:
                await limiter.aclose()
        return outcomes

    outcomes = asyncio.run(run())
    assert outcomes[:5] == ["ok"] * 5 and outcomes[5:].count("429") >= 2, outcomes


# ------------------------------------------------------------------ serve --processes


@pytest.mark.server
@pytest.mark.postgres
def test_serve_with_two_processes_takes_a_burst_with_no_5xx(
    tmp_path: Path, postgres_url: str, livekit: FakeLiveKitProcess
) -> None:
    env = api_env(postgres_url, CONVOI_DEV_API_KEYS="acct_burst=sk_live_burst0123456789abcdef")
    with ApiProcess(tmp_path, env, livekit, processes=2) as api:
        report = asyncio.run(drive(api.url, "sk_live_burst0123456789abcdef", AGENT, clients=200))
        log = api.log_tail(200)
    assert report.server_errors == [], log
    assert [s.status for s in report.of("create")] == [201] * 200
    assert [s.status for s in report.of("replay")] == [201] * 200
    ids = {s.call_id for s in report.of("create")}
    assert len(ids) == 200 and count_calls(postgres_url) == 200
    assert sorted(livekit.dispatch_rooms()) == sorted(ids)


# ------------------------------------------------------------------ database locks


def _stale_call(database: Database, account: str) -> str:
    call_id = f"call_{uuid.uuid4().hex[:20]}"
    with database.session() as session:
        create_key(session, account, "sk_live")
        now = utcnow() - timedelta(hours=1)
        session.add(
            Call(
                id=call_id, account_id=account, type="web", status="active", room_id=call_id,
                callspec="{}", duration_seconds=0.0, cost_amount="0", cost_currency="USD",
                last_event_sequence=0, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        session.commit()
    return call_id


@pytest.mark.postgres
def test_one_process_at_a_time_sweeps_the_leases(postgres_url: str) -> None:
    upgrade_to_head(postgres_url)
    first, second = Database(postgres_url), Database(postgres_url)
    try:
        call_id = _stale_call(first, "acct_sweep")
        leases = Leases(active=60, starting=180)
        with first.session() as holder:
            assert try_exclusive(holder, SWEEP_LOCK)  # another process is sweeping
            with second.session() as session:
                assert expire_calls(session, utcnow(), leases) == []
            with second.session() as session:
                assert session.get(Call, call_id).status == "active"  # type: ignore[union-attr]
            holder.rollback()  # its sweep ended
        with second.session() as session:
            assert [c.call_id for c in expire_calls(session, utcnow(), leases)] == [call_id]
        with first.session() as session:
            assert expire_calls(session, utcnow(), leases) == []  # ended once
    finally:
        first.dispose()
        second.dispose()


@pytest.mark.postgres
def test_the_admission_lock_is_held_in_the_database_until_commit(postgres_url: str) -> None:
    upgrade_to_head(postgres_url)
    first, second = Database(postgres_url), Database(postgres_url)
    probe = text("SELECT pg_try_advisory_xact_lock(CAST(:ns AS integer), hashtext(:account))")
    ns = namespace_id("convoi.admission")
    try:
        with first.session() as holder:
            lock_account(holder, "acct_a")
            with second.session() as other:
                assert other.scalar(probe, {"ns": ns, "account": "acct_a"}) is False
                assert other.scalar(probe, {"ns": ns, "account": "acct_b"}) is True
                other.rollback()
            holder.commit()
        with second.session() as other:
            assert other.scalar(probe, {"ns": ns, "account": "acct_a"}) is True
    finally:
        first.dispose()
        second.dispose()


def test_sqlite_sweeps_and_admissions_take_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite3"
    upgrade_to_head(f"sqlite:///{path}")
    database = Database(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)  # another process's writer
    try:
        _stale_call(database, "acct_lite")
        for take in (
            lambda session: try_exclusive(session, SWEEP_LOCK),
            lambda session: lock_account(session, "acct_lite"),
        ):
            with database.session() as session:
                take(session)
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
                session.commit()
            other.execute("BEGIN IMMEDIATE")  # free again once committed
            other.execute("ROLLBACK")
    finally:
        other.close()
        database.dispose()
