"""The Calls API under bursts and abuse: a real uvicorn ``convoi-api`` (fake, slow LiveKit).

- 200 concurrent clients (create with their own Idempotency-Key, replay, GET): zero 5xx, every
  create stored exactly once and dispatched once, every replay the original byte for byte;
- the same key sent concurrently (to one API, and to two APIs on one PostgreSQL): one call;
- LiveKit hanging with every API thread waiting on it: the worker's signed events are still
  stored, an unauthenticated request still gets its 401;
- saturation answers 503 with Retry-After (database pool exhausted; too many requests in flight);
- raw sockets: a 300 MB body without a key is refused with 401, with a key 413, before the body
  was sent; a chunked body is refused as soon as it passes 1 MiB (nothing more is read).

Outcomes, never speed: waits are on events with generous timeouts.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from convoi.controlplane.db.models import Call, IdempotencyRecord
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway, signed_event
from convoi.devstack.controlplane_harness import ControlPlaneServer
from convoi.devstack.loadtest import drive, postgres_database, web_call_body
from tests.helpers import REPO

pytestmark = pytest.mark.server

CALLS = "/api/v1/public/calls"
SECRET = "load-test-events-secret"
AGENT = "agt_b88d642dd68747f28305c428b209xxxx"
WAIT = 60.0
MIB = 1024 * 1024


def settings(database_url: str, **env: Any) -> ControlPlaneSettings:
    values: dict[str, Any] = {
        "CONVOI_DATABASE_URL": database_url,
        "CONVOI_CONFIG_DIR": REPO / "agents_config",
        "CONVOI_EVENTS_SECRET": SECRET,
        "CONVOI_RATE_LIMIT_SK_PER_MINUTE": 0,
        "CONVOI_MAX_CONCURRENT_CALLS": 0,
        "CONVOI_CALL_LEASE_SECONDS": 3600,
        "CONVOI_CALL_START_LEASE_SECONDS": 3600,
        **env,
    }
    return ControlPlaneSettings(**values)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/controlplane.sqlite3"


def count(server: ControlPlaneServer, model: Any) -> int:
    with server.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ------------------------------------------------------------------------ bursts


def test_200_concurrent_clients_get_no_5xx_and_every_create_counts_once(tmp_path: Path) -> None:
    gateway = FakeLiveKitGateway(latency_s=0.02)
    with ControlPlaneServer(settings(sqlite_url(tmp_path)), gateway) as server:
        key = server.create_key("acct_load")
        report = asyncio.run(drive(server.url, key, AGENT, clients=200))
        assert report.server_errors == []
        creates, replays, gets = report.of("create"), report.of("replay"), report.of("get")
        assert [s.status for s in creates] == [201] * 200
        assert [s.status for s in replays] == [201] * 200
        assert [s.status for s in gets] == [200] * 200
        by_key = {s.idempotency_key: s for s in creates}
        assert len(by_key) == 200
        for replay in replays:
            assert replay.body == by_key[replay.idempotency_key].body  # byte for byte
        ids = {s.call_id for s in creates}
        assert len(ids) == 200 and {s.call_id for s in gets} == ids
        assert count(server, Call) == 200
        assert count(server, IdempotencyRecord) == 200
        assert sorted(d.room for d in gateway.dispatches) == sorted(ids)  # dispatched once each


def _same_key_burst(urls: list[str], key: str, keys: int, copies: int) -> list[httpx.Response]:
    """``copies`` concurrent POSTs of each of ``keys`` Idempotency-Keys, spread over ``urls``."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=WAIT) as client:
            requests = []
            for k in range(keys):
                idem = str(uuid.uuid4())
                body = web_call_body(AGENT, k)
                for c in range(copies):
                    url = urls[c % len(urls)] + CALLS
                    headers = {**auth(key), "Idempotency-Key": idem}
                    requests.append(client.post(url, json=body, headers=headers))
            return list(await asyncio.gather(*requests))

    return asyncio.run(run())


def _assert_one_call_per_key(responses: list[httpx.Response], keys: int) -> set[str]:
    assert {r.status_code for r in responses} <= {201, 409}, Counter(
        r.status_code for r in responses
    )
    ids_by_key: dict[str, set[str]] = {}
    for response in responses:
        idem = response.request.headers["Idempotency-Key"]
        ids = ids_by_key.setdefault(idem, set())
        if response.status_code == 201:
            ids.add(response.json()["id"])
        else:
            assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert len(ids_by_key) == keys
    assert all(len(ids) == 1 for ids in ids_by_key.values()), ids_by_key
    return {i for ids in ids_by_key.values() for i in ids}


def test_the_same_key_sent_concurrently_creates_one_call(tmp_path: Path) -> None:
    gateway = FakeLiveKitGateway(latency_s=0.02)
    with ControlPlaneServer(settings(sqlite_url(tmp_path)), gateway) as server:
        key = server.create_key("acct_load")
        responses = _same_key_burst([server.url], key, keys=40, copies=4)
        ids = _assert_one_call_per_key(responses, 40)
        assert count(server, Call) == 40 and len(gateway.dispatches) == 40
        assert {d.room for d in gateway.dispatches} == ids


@pytest.fixture
def postgres_url() -> Iterator[str]:
    server = os.environ.get("CONVOI_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("CONVOI_TEST_POSTGRES_URL is not set (scripts/postgres start)")
    with postgres_database(server) as url:
        yield url


@pytest.mark.postgres
def test_two_apis_on_one_postgresql_share_idempotency(postgres_url: str) -> None:
    gateways = [FakeLiveKitGateway(latency_s=0.02), FakeLiveKitGateway(latency_s=0.02)]
    with (
        ControlPlaneServer(settings(postgres_url), gateways[0]) as first,
        ControlPlaneServer(settings(postgres_url), gateways[1]) as second,
    ):
        key = first.create_key("acct_load")
        responses = _same_key_burst([first.url, second.url], key, keys=40, copies=4)
        _assert_one_call_per_key(responses, 40)
        assert count(first, Call) == 40
        assert sum(len(g.dispatches) for g in gateways) == 40
        report = asyncio.run(drive(second.url, key, AGENT, clients=200))
        assert report.server_errors == []
        assert count(first, Call) == 240


# ------------------------------------------------------------------------ saturation


def _post_in_background(url: str, key: str, n: int) -> tuple[ThreadPoolExecutor, list[Any]]:
    pool = ThreadPoolExecutor(n)
    futures = [
        pool.submit(httpx.post, url + CALLS, json=web_call_body(AGENT, i), headers=auth(key),
                    timeout=WAIT * 2)
        for i in range(n)
    ]  # fmt: skip
    return pool, futures


def test_events_are_stored_while_livekit_hangs_every_api_thread(tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    gateway = FakeLiveKitGateway(gate=gate)
    env = {"CONVOI_API_THREADS": 4}
    with ControlPlaneServer(settings(sqlite_url(tmp_path), **env), gateway) as server:
        key = server.create_key("acct_load")
        call_id = httpx.post(server.url + CALLS, json=web_call_body(AGENT, 0), headers=auth(key))
        call_id = call_id.json()["id"]
        gate.clear()
        pool, futures = _post_in_background(server.url, key, 10)
        try:
            for _ in range(4):  # every API thread is now stuck in LiveKit
                assert gateway.waiting.acquire(timeout=WAIT)
            body, headers = signed_event(SECRET, call_id, 1, "active")
            event = httpx.post(
                f"{server.url}/internal/v1/calls/{call_id}/events",
                content=body,
                headers=headers,
                timeout=WAIT,
            )
            assert event.status_code == 201, event.text
            anonymous = httpx.post(server.url + CALLS, json={}, timeout=WAIT)
            assert anonymous.status_code == 401
            assert not any(f.done() for f in futures)
        finally:
            gate.set()
            results = [f.result() for f in futures]
            pool.shutdown()
        assert [r.status_code for r in results] == [201] * 10
        got = httpx.get(f"{server.url}{CALLS}/{call_id}", headers=auth(key))
        assert got.json()["status"] == "active"


def test_too_many_requests_in_flight_is_503_with_retry_after(tmp_path: Path) -> None:
    gate = threading.Event()
    gateway = FakeLiveKitGateway(gate=gate)
    env = {"CONVOI_API_MAX_IN_FLIGHT": 3}
    with ControlPlaneServer(settings(sqlite_url(tmp_path), **env), gateway) as server:
        key = server.create_key("acct_load")
        pool, futures = _post_in_background(server.url, key, 3)
        try:
            for _ in range(3):
                assert gateway.waiting.acquire(timeout=WAIT)
            refused = httpx.get(f"{server.url}{CALLS}/call_x", headers=auth(key), timeout=WAIT)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "overloaded"
            assert int(refused.headers["Retry-After"]) >= 1
        finally:
            gate.set()
            results = [f.result() for f in futures]
            pool.shutdown()
        assert [r.status_code for r in results] == [201] * 3
        assert httpx.get(f"{server.url}{CALLS}/call_x", headers=auth(key)).status_code == 404


def test_an_exhausted_database_pool_is_503_within_its_timeout(tmp_path: Path) -> None:
    env = {
        "CONVOI_DB_POOL_SIZE": 1,
        "CONVOI_DB_MAX_OVERFLOW": 0,
        "CONVOI_DB_POOL_TIMEOUT_SECONDS": 0.5,
    }
    gateway = FakeLiveKitGateway()
    with ControlPlaneServer(settings(sqlite_url(tmp_path), **env), gateway) as server:
        key = server.create_key("acct_load")
        created = httpx.post(server.url + CALLS, json=web_call_body(AGENT, 0), headers=auth(key))
        call_id = created.json()["id"]
        with server.database.engine.connect():  # the pool's only connection
            # a client timeout far below the old 30 s pool wait: a hang would fail here
            refused = httpx.get(f"{server.url}{CALLS}/call_x", headers=auth(key), timeout=10)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "database_busy"
            assert refused.headers["Retry-After"] == "1"
            body, headers = signed_event(SECRET, call_id, 1, "active")  # events: own pool
            url = f"{server.url}/internal/v1/calls/{call_id}/events"
            event = httpx.post(url, content=body, headers=headers, timeout=WAIT)
            assert event.status_code == 201, event.text
        assert httpx.get(f"{server.url}{CALLS}/call_x", headers=auth(key)).status_code == 404


# ------------------------------------------------------------------------ bodies, raw


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def _raw(port: int, head: str, body_chunks: list[bytes] | None = None) -> tuple[int, bytes]:
    """Send a request head (and chunks), then read the answer: (status, bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(head.encode())
        for chunk in body_chunks or []:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        answer = b""
        while not _complete(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, answer


def _head(path: str, *headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    return "\r\n".join([*lines, *headers]) + "\r\n\r\n"


def test_huge_bodies_are_refused_before_they_are_sent(tmp_path: Path) -> None:
    with ControlPlaneServer(settings(sqlite_url(tmp_path)), FakeLiveKitGateway()) as server:
        key = server.create_key("acct_load")
        huge = f"Content-Length: {300 * MIB}"
        # nothing of the 300 MB is sent: the answer cannot have waited for it
        status, answer = _raw(server.port, _head(CALLS, huge))
        assert status == 401 and b"missing_api_key" in answer
        status, answer = _raw(server.port, _head(CALLS, huge, f"Authorization: Bearer {key}"))
        assert status == 413 and b"payload_too_large" in answer
        events = "/internal/v1/calls/call_x/events"
        signed = ("Convoi-Signature: v1=00", "Convoi-Timestamp: 1")
        status, _ = _raw(server.port, _head(events, huge))
        assert status == 401
        status, answer = _raw(server.port, _head(events, huge, *signed))
        assert status == 413 and b"payload_too_large" in answer


def test_a_chunked_body_is_refused_once_it_passes_the_limit(tmp_path: Path) -> None:
    with ControlPlaneServer(settings(sqlite_url(tmp_path)), FakeLiveKitGateway()) as server:
        key = server.create_key("acct_load")
        chunked = "Transfer-Encoding: chunked"
        # 1 MiB + 1 byte, and never the terminating chunk: the server answers without the end
        chunks = [b"a" * (64 * 1024)] * 16 + [b"a"]
        head = _head(CALLS, chunked, f"Authorization: Bearer {key}")
        status, answer = _raw(server.port, head, chunks)
        assert status == 413 and b"payload_too_large" in answer
        events = "/internal/v1/calls/call_x/events"
        signed = ("Convoi-Signature: v1=00", "Convoi-Timestamp: 1")
        big = [b"a" * (64 * 1024)] * 256 + [b"a"]  # 16 MiB + 1 byte
        status, _ = _raw(server.port, _head(events, chunked, *signed), big)
        assert status == 413
