"""Customer webhooks, in process (fake LiveKit, a real local HTTP receiver): the endpoints API,
``call.status`` / ``call.ended`` delivered signed and in order from the outbox, retries that lose
and duplicate nothing, a slow endpoint that never holds the API up, and a call's deliveries."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from convoi.controlplane import create_app
from convoi.controlplane.keys import create_key
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from convoi.reporting.events import CallEvent
from convoi.reporting.signing import signature_headers
from tests.fixtures.seed_examples import OUTBOUND_FULL, WEB_MINIMAL
from tests.test_controlplane_api import SECRET, Api, assert_error, make_settings
from tests.webhook_receiver import Received, WebhookReceiver, verify

WEBHOOKS = "/api/v1/public/webhooks"
FAST = {
    "CONVOI_WEBHOOK_POLL_SECONDS": 0.05,
    "CONVOI_WEBHOOK_BACKOFF_BASE_SECONDS": 0.2,
    "CONVOI_WEBHOOK_BACKOFF_MAX_SECONDS": 0.5,
    "CONVOI_WEBHOOK_TIMEOUT_SECONDS": 30,
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    gateway = FakeLiveKitGateway()
    app = create_app(make_settings(tmp_path, **FAST), gateway)
    with TestClient(app) as client:
        with app.state.convoi.database.session() as session:
            keys = {
                "sk": create_key(session, "acct_demo", "sk_live"),
                "pk": create_key(session, "acct_demo", "pk_live"),
                "other": create_key(session, "acct_other", "sk_live"),
            }
        yield Api(client, gateway, keys)


def register(api: Api, url: str, **fields: Any) -> dict[str, Any]:
    response = api.client.post(WEBHOOKS, json={"url": url, **fields}, headers=api.headers())
    assert response.status_code == 201, response.text
    return dict(response.json())


def post_event(api: Api, call_id: str, **fields: Any) -> Any:
    """POST a worker event with any CallEvent fields, signed."""
    event = CallEvent.model_validate(
        {"id": f"evt_{uuid.uuid4().hex}", "call_id": call_id, "created_at": time.time(), **fields}
    )
    body = event.model_dump_json().encode()
    headers = {**signature_headers(SECRET, body, event.id), "Content-Type": "application/json"}
    return api.client.post(f"/internal/v1/calls/{call_id}/events", content=body, headers=headers)


def phone_call_lifecycle(api: Api) -> str:
    """A phone call the worker reports from ringing to its end; its id."""
    call_id = str(api.create(json.loads(OUTBOUND_FULL.text())).json()["id"])
    meta = {"campaign": "may-outreach"}
    assert api.event(call_id, 1, "ringing", metadata=meta).status_code == 201
    assert api.event(call_id, 2, "active", metadata=meta).status_code == 201
    assert (
        api.event(call_id, 3, "active", event_type="call.progress", metadata=meta).status_code
        == 201
    )
    assert api.event(call_id, 4, "completed", ended_reason="customer_hangup", metadata=meta,
                     duration_seconds=12.5, cost="0.0905").status_code == 201  # fmt: skip
    ended = post_event(
        api, call_id, sequence=5, type="call.ended", status="completed",
        ended_reason="customer_hangup", metadata=meta, duration_seconds=12.5,
        cost={"amount": "0.0905", "by_component": {"llm": "0.0405", "telephony": "0.05"},
              "by_member": {"agent": "0.0405"}},
        transcript=[{"role": "assistant", "text": "Hi Wasay", "at": 1.0, "member": "agent"},
                    {"role": "user", "text": "Hello", "at": 2.0}],
    )  # fmt: skip
    assert ended.status_code == 201, ended.text
    return call_id


def events_of(received: list[Received]) -> list[dict[str, Any]]:
    return [r.event for r in received]


# ------------------------------------------------------------------------------ endpoints API


def test_endpoints_are_created_listed_and_deleted_with_a_secret_shown_once(api: Api) -> None:
    created = register(api, "https://example.com/hooks", events=["call.ended"], description="crm")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) == 54
    assert created["events"] == ["call.ended"] and created["object"] == "webhook_endpoint"
    listed = api.client.get(WEBHOOKS, headers=api.headers()).json()
    assert [e["id"] for e in listed["data"]] == [created["id"]]
    assert "secret" not in listed["data"][0]
    assert api.client.get(WEBHOOKS, headers=api.headers("other")).json()["data"] == []
    assert_error(
        api.client.delete(f"{WEBHOOKS}/{created['id']}", headers=api.headers("other")),
        404, "webhook_not_found",
    )  # fmt: skip
    deleted = api.client.delete(f"{WEBHOOKS}/{created['id']}", headers=api.headers())
    assert deleted.json() == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
    assert api.client.get(WEBHOOKS, headers=api.headers()).json()["data"] == []
    assert_error(api.client.delete(f"{WEBHOOKS}/{created['id']}", headers=api.headers()), 404)


def test_publishable_keys_are_refused_every_webhook_route(api: Api) -> None:
    pk = api.headers("pk")
    assert_error(api.client.post(WEBHOOKS, json={"url": 1}, headers=pk), 403, "permission_denied")
    assert_error(api.client.get(WEBHOOKS, headers=pk), 403, "permission_denied")
    assert_error(api.client.delete(f"{WEBHOOKS}/whk_x", headers=pk), 403, "permission_denied")
    call_id = api.create(json.loads(WEB_MINIMAL.text()), key="pk").json()["id"]
    assert_error(api.client.get(f"/api/v1/public/calls/{call_id}/events", headers=pk), 403)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "https://example.com/x", "events": ["call.progress"]}, "events[0]"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "secret": "mine"}, "secret"),
    ],
)
def test_invalid_endpoints_are_422_naming_the_field(api: Api, body: dict, field: str) -> None:
    assert_error(api.client.post(WEBHOOKS, json=body, headers=api.headers()), 422, field=field)


def test_an_account_has_at_most_ten_endpoints(api: Api) -> None:
    for n in range(10):
        register(api, f"https://example.com/{n}")
    response = api.client.post(WEBHOOKS, json={"url": "https://e.com"}, headers=api.headers())
    assert_error(response, 422, "too_many_webhooks")


# ------------------------------------------------------------------------------ delivery


def test_a_calls_events_are_delivered_signed_in_order_with_its_metadata(api: Api) -> None:
    with WebhookReceiver() as receiver:
        endpoint = register(api, receiver.url)
        ended_only = register(api, receiver.url + "?ended", events=["call.ended"])
        call_id = phone_call_lifecycle(api)
        got = receiver.wait_for(lambda r: len(r) >= 5)
    main = [r.event for r in got if r.path == "/hooks"]
    for request in got:
        secret = endpoint["secret"] if request.path == "/hooks" else ended_only["secret"]
        assert verify(secret, request.headers, request.body), request.headers
        assert request.headers["Convoi-Event-Id"] == request.event["id"]
    statuses = [
        (e["data"]["previous"], e["data"]["status"]) for e in main if e["type"] == "call.status"
    ]
    assert statuses == [("initiated", "ringing"), ("ringing", "active"), ("active", "completed")]
    ended = [e for e in main if e["type"] == "call.ended"]
    other = [r.event for r in got if r.path != "/hooks"]
    assert len(ended) == 1 and [e["id"] for e in other] == [ended[0]["id"]]  # one event id
    data = ended[0]["data"]
    assert (data["call_id"], data["status"], data["ended_reason"]) == (
        call_id, "completed", "customer_hangup",
    )  # fmt: skip
    assert data["metadata"] == {"campaign": "may-outreach"}
    assert data["customer"]["metadata"] == {"lead_id": "L-12345"}
    assert data["cost"] == {
        "amount": 0.0905, "currency": "USD", "by_component": {"llm": 0.0405, "telephony": 0.05},
        "by_member": {"agent": 0.0405}, "unpriced": [],
    }  # fmt: skip
    assert [t["text"] for t in data["transcript"]] == ["Hi Wasay", "Hello"]
    assert data["duration_seconds"] == 12.5 and data["handoffs"] == []
    assert len({e["id"] for e in main}) == 4  # unique ids
    assert [e["type"] for e in main] == ["call.status"] * 3 + ["call.ended"]  # in order
    deliveries = api.client.get(f"/api/v1/public/calls/{call_id}/events", headers=api.headers())
    rows = deliveries.json()["data"]
    assert [(r["type"], r["status"], r["attempts"]) for r in rows if r["endpoint_id"] == endpoint["id"]] == [
        ("call.status", "delivered", 1)] * 3 + [("call.ended", "delivered", 1)]  # fmt: skip
    assert [r["type"] for r in rows if r["endpoint_id"] == ended_only["id"]] == ["call.ended"]


def test_a_receiver_that_fails_gets_every_event_once_and_in_order(api: Api) -> None:
    with WebhookReceiver(fail_first=4) as receiver:
        register(api, receiver.url)
        call_id = phone_call_lifecycle(api)
        got = receiver.wait_for(lambda r: len(r) >= 4)
        attempts = [r.event["id"] for r in receiver.requests]
    delivered = [r.event for r in got]
    assert len({e["id"] for e in delivered}) == len(delivered) == 4  # nothing lost or duplicated
    assert [e["type"] for e in delivered] == ["call.status"] * 3 + ["call.ended"]
    order = [e["id"] for e in delivered]
    assert [order.index(i) for i in attempts] == sorted(order.index(i) for i in attempts)
    assert attempts[:5] == [order[0]] * 5  # retried until delivered; the next one waited
    rows = api.client.get(f"/api/v1/public/calls/{call_id}/events", headers=api.headers()).json()
    first = rows["data"][0]
    assert (first["status"], first["attempts"], first["last_status_code"]) == ("delivered", 5, 200)


def test_a_slow_receiver_never_holds_the_api_up(api: Api) -> None:
    hold = threading.Event()
    with WebhookReceiver(hold=hold) as receiver:
        register(api, receiver.url)
        call_id = api.create(json.loads(OUTBOUND_FULL.text())).json()["id"]
        assert api.event(call_id, 1, "ringing").status_code == 201
        receiver.wait_holding(1)  # the endpoint holds our first delivery
        # while it does, the API answers everything
        second = api.create(json.loads(OUTBOUND_FULL.text()))
        assert second.status_code == 201
        assert api.event(call_id, 2, "active").status_code == 201
        assert api.get(call_id).json()["status"] == "active"
        rows = api.client.get(f"/api/v1/public/calls/{call_id}/events", headers=api.headers())
        assert [r["status"] for r in rows.json()["data"]] == ["pending", "pending"]
        assert receiver.holding == 1 and receiver.requests == []  # still held
        hold.set()
        got = receiver.wait_for(lambda r: len(r) >= 2)
    assert [e["data"]["status"] for e in events_of(got)] == ["ringing", "active"]


def test_a_deleted_endpoint_gets_nothing_more(api: Api) -> None:
    hold = threading.Event()
    with WebhookReceiver(hold=hold) as receiver:
        endpoint = register(api, receiver.url)
        call_id = api.create(json.loads(OUTBOUND_FULL.text())).json()["id"]
        assert api.event(call_id, 1, "ringing").status_code == 201
        assert api.event(call_id, 2, "active").status_code == 201
        receiver.wait_holding(1)
        api.client.delete(f"{WEBHOOKS}/{endpoint['id']}", headers=api.headers())
        hold.set()
        receiver.wait_for(lambda r: len(r) >= 1)
        rows = api.client.get(f"/api/v1/public/calls/{call_id}/events", headers=api.headers())
    statuses = [r["status"] for r in rows.json()["data"]]
    assert statuses[1] == "canceled"


def test_a_failed_create_and_another_accounts_calls_notify_only_their_account(api: Api) -> None:
    from convoi.controlplane.errors import LiveKitUnavailable

    with WebhookReceiver() as receiver:
        register(api, receiver.url)
        other = api.client.post(WEBHOOKS, json={"url": receiver.url + "?other"},
                                headers=api.headers("other")).json()  # fmt: skip
        api.gateway.fail_next("dispatch", LiveKitUnavailable("LiveKit down"))
        assert api.create(json.loads(OUTBOUND_FULL.text())).status_code == 503
        got = receiver.wait_for(lambda r: len(r) >= 2)
    assert [(e["type"], e["data"]["status"]) for e in events_of(got)] == [
        ("call.status", "failed"), ("call.ended", "failed"),
    ]  # fmt: skip
    assert got[1].event["data"]["ended_reason"] == "provider_error"
    assert all(verify(str(other["secret"]), r.headers, r.body) is False for r in got)


def test_a_receiver_that_is_down_then_up_gets_everything_once_in_order(api: Api) -> None:
    with socket.socket() as probe:  # a port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    register(api, f"http://127.0.0.1:{port}/hooks")
    call_id = phone_call_lifecycle(api)
    deadline = time.monotonic() + 60
    while True:  # polling the public API, as a customer would, until retries are under way
        rows = api.client.get(f"/api/v1/public/calls/{call_id}/events", headers=api.headers())
        first = rows.json()["data"][0]
        if first["attempts"] >= 2:
            break
        assert time.monotonic() < deadline, first
        time.sleep(0.1)
    assert first["status"] == "pending" and first["last_error"].startswith("ConnectError")
    assert all(r["attempts"] == 0 for r in rows.json()["data"][1:])  # waiting their turn
    with WebhookReceiver(port=port) as receiver:
        got = receiver.wait_for(lambda r: len(r) >= 4)
    assert [e["type"] for e in events_of(got)] == ["call.status"] * 3 + ["call.ended"]
    assert len({r.event["id"] for r in receiver.requests}) == len(receiver.requests) == 4
