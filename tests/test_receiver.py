"""The reference receiver: signature (401), validation (422), de-duplication, latest call state."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from convoi.receiver import ReceiverStore, ingest_event
from convoi.receiver.app import create_app
from convoi.reporting.events import CallEvent, Cost
from convoi.reporting.signing import EVENT_ID_HEADER, TIMESTAMP_HEADER, signature_headers
from tests.helpers import make_event

SECRET = "receiver-test-secret"


def signed(body: bytes, event_id: str, secret: str = SECRET, **kw: float) -> dict[str, str]:
    return {**signature_headers(secret, body, event_id, **kw), "Content-Type": "application/json"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ReceiverStore]:
    store = ReceiverStore(tmp_path / "receiver.sqlite3")
    yield store
    store.close()


@pytest.fixture
async def client(store: ReceiverStore) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(store, [SECRET]))) as client:
        yield client


async def post(client: TestClient, event: CallEvent, **kw: object):  # type: ignore[no-untyped-def]
    body = event.model_dump_json().encode()
    return await client.post(
        f"/internal/v1/calls/{event.call_id}/events", data=body, headers=signed(body, event.id)
    )


async def test_new_event_is_stored_then_duplicate_is_idempotent(
    client: TestClient, store: ReceiverStore
) -> None:
    event = make_event("call_1", 1)
    first = await post(client, event)
    assert first.status == 201
    assert await first.json() == {"status": "stored", "id": event.id}
    for _ in range(2):
        again = await post(client, event)
        assert again.status == 200
        assert await again.json() == {"status": "duplicate", "id": event.id}
    stored = store.event(event.id)
    assert stored is not None and stored.duplicates == 2
    assert stored.body == event.model_dump_json()  # the exact bytes received
    state = store.call("call_1")
    assert state is not None and state.events_received == 1


async def test_get_routes(client: TestClient) -> None:
    metadata = {"lead_id": "L-1"}
    ended = make_event(
        "call_2",
        2,
        metadata=metadata,
        type="call.ended",
        status="completed",
        ended_reason="customer_hangup",
        fault="customer",
        duration_seconds=42.5,
        cost=Cost(amount=Decimal("0.1234567"), by_component={"llm": Decimal("0.1")}),
    )
    for event in (make_event("call_2", 1, metadata=metadata), ended):
        assert (await post(client, event)).status == 201
    events = await (await client.get("/internal/v1/calls/call_2/events")).json()
    assert [e["sequence"] for e in events["events"]] == [1, 2]
    assert events["events"][1]["event"]["cost"]["amount"] == "0.1234567"
    call = await (await client.get("/internal/v1/calls/call_2")).json()
    assert call["status"] == "completed"
    assert call["ended_reason"] == "customer_hangup"
    assert call["fault"] == "customer"
    assert call["duration_seconds"] == 42.5
    assert call["cost_amount"] == "0.1234567"
    assert call["metadata"] == {"lead_id": "L-1"}
    assert (await client.get("/internal/v1/calls/call_unknown")).status == 404
    assert await (await client.get("/healthz")).json() == {"status": "ok"}


async def test_older_sequence_arriving_late_does_not_overwrite_newer_state(
    client: TestClient, store: ReceiverStore
) -> None:
    ended = make_event("call_3", 3, status="completed", ended_reason="agent_hangup")
    assert (await post(client, ended)).status == 201
    assert (await post(client, make_event("call_3", 2, status="active"))).status == 201
    assert (await post(client, make_event("call_3", 1, status="initiated"))).status == 201
    state = store.call("call_3")
    assert state is not None
    assert (state.status, state.sequence, state.events_received) == ("completed", 3, 3)
    assert [e.sequence for e in store.events("call_3")] == [1, 2, 3]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.pop(TIMESTAMP_HEADER), "missing_header"),
        (lambda h: h.update({"Convoi-Signature": "v1=nothex"}), "bad_format"),
        (lambda h: h.update({"Convoi-Signature": "v1=" + "0" * 64}), "mismatch"),
    ],
)
async def test_bad_signatures_are_401_and_nothing_is_stored(
    client: TestClient, store: ReceiverStore, mutate, reason: str
) -> None:  # type: ignore[no-untyped-def]
    event = make_event("call_4", 1)
    body = event.model_dump_json().encode()
    headers = signed(body, event.id)
    mutate(headers)
    response = await client.post("/internal/v1/calls/call_4/events", data=body, headers=headers)
    assert response.status == 401
    payload = await response.json()
    assert payload["error"] == "invalid_signature" and payload["reason"] == reason
    assert store.event_count() == 0


async def test_stale_signature_and_wrong_secret_are_401(
    client: TestClient, store: ReceiverStore
) -> None:
    event = make_event("call_5", 1)
    body = event.model_dump_json().encode()
    stale = signed(body, event.id, now=time.time() - 301)
    response = await client.post("/internal/v1/calls/call_5/events", data=body, headers=stale)
    assert response.status == 401 and (await response.json())["reason"] == "stale_timestamp"
    wrong = signed(body, event.id, secret="not-the-secret")
    response = await client.post("/internal/v1/calls/call_5/events", data=body, headers=wrong)
    assert response.status == 401 and (await response.json())["reason"] == "mismatch"
    assert store.event_count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"id": "evt_x", "call_id": "call_6", "sequence": 0}',
        json.dumps(
            {**json.loads(make_event("call_6", 1).model_dump_json()), "status": "exploded"}
        ).encode(),
        json.dumps({**json.loads(make_event("call_6", 1).model_dump_json()), "extra": 1}).encode(),
    ],
)
async def test_invalid_events_are_422(
    client: TestClient, store: ReceiverStore, body: bytes
) -> None:
    response = await client.post(
        "/internal/v1/calls/call_6/events", data=body, headers=signed(body, "evt_x")
    )
    assert response.status == 422
    payload = await response.json()
    assert payload["error"] == "invalid_event" and payload["detail"]
    assert store.event_count() == 0


async def test_path_call_id_and_event_id_header_must_match_the_body(
    client: TestClient, store: ReceiverStore
) -> None:
    event = make_event("call_7", 1)
    body = event.model_dump_json().encode()
    response = await client.post(
        "/internal/v1/calls/call_other/events", data=body, headers=signed(body, event.id)
    )
    assert response.status == 422
    assert (await response.json())["error"] == "call_id_mismatch"
    headers = signed(body, event.id)
    headers[EVENT_ID_HEADER] = "evt_someone_else"
    response = await client.post("/internal/v1/calls/call_7/events", data=body, headers=headers)
    assert response.status == 422
    assert (await response.json())["error"] == "event_id_mismatch"
    assert store.event_count() == 0


async def test_large_call_ended_body_is_accepted(client: TestClient) -> None:
    transcript = [{"role": "user", "text": "x" * 1000, "at": float(i)} for i in range(2000)]
    event = make_event("call_8", 1, type="call.ended", status="completed", transcript=transcript)
    assert len(event.model_dump_json()) > 1024 * 1024
    assert (await post(client, event)).status == 201


def test_rotation_and_framework_free_ingest(tmp_path: Path) -> None:
    store = ReceiverStore(tmp_path / "r.sqlite3")
    event = make_event("call_9", 1)
    body = event.model_dump_json().encode()
    result = ingest_event(
        store, ["new", "old"], signature_headers("old", body, event.id), body, "call_9"
    )
    assert (result.status_code, result.payload["status"]) == (201, "stored")
    result = ingest_event(store, ["new"], signature_headers("old", body, event.id), body, "call_9")
    assert result.status_code == 401
    store.close()
