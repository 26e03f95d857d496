"""The Calls API of ``convoi-api`` (seed ``calls-api.txt``), in process, with a fake LiveKit.

Every seed example request is POSTed and its response checked field for field; then the rules:
workforce only on phone calls, what pk_live_ keys may do, authentication, account isolation,
Idempotency-Key replay and conflicts, the error body of every 4xx, LiveKit failures, and the
worker's signed events updating what GET returns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from convoi.callspec import parse_callspec
from convoi.controlplane import ControlPlaneSettings, create_app
from convoi.controlplane.db.models import Call, IdempotencyRecord, utcnow
from convoi.controlplane.errors import LiveKitRejected, LiveKitUnavailable
from convoi.controlplane.keys import create_key
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway, signed_event
from tests.fixtures.seed_examples import (
    OUTBOUND_FULL,
    SEED_EXAMPLES,
    WEB_MINIMAL,
    WEB_OVERRIDES,
    WORKFORCE_IN_AGENT_ID,
    SeedExample,
)
from tests.helpers import REPO, SQUAD

CALLS = "/api/v1/public/calls"
SECRET = "controlplane-test-events-secret"
PUBLIC_URL = "wss://livekit.example.test"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

WEB_KEYS = {
    "id", "object", "type", "status", "agent_id", "room_id", "livekit", "duration_seconds",
    "cost", "metadata", "created_at", "updated_at",
}  # fmt: skip
PHONE_KEYS = WEB_KEYS | {"squad_id", "phone_number_id", "customer"}


class Api:
    """A TestClient on a fresh app, its fake LiveKit and keys for two accounts."""

    def __init__(self, client: TestClient, gateway: FakeLiveKitGateway, keys: dict[str, str]):
        self.client = client
        self.gateway = gateway
        self.keys = keys
        self.database = client.app.state.convoi.database  # type: ignore[attr-defined]

    def headers(self, key: str = "sk", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}", **extra}

    def create(self, body: Any, key: str = "sk", **headers: str) -> Any:
        return self.client.post(CALLS, json=body, headers=self.headers(key, **headers))

    def get(self, call_id: str, key: str = "sk") -> Any:
        return self.client.get(f"{CALLS}/{call_id}", headers=self.headers(key))

    def event(self, call_id: str, sequence: int, status: str, **fields: Any) -> Any:
        body, headers = signed_event(SECRET, call_id, sequence, status, **fields)
        return self.client.post(
            f"/internal/v1/calls/{call_id}/events", content=body, headers=headers
        )


def make_settings(tmp_path: Path, **env: Any) -> ControlPlaneSettings:
    values = {
        "CONVOI_DATABASE_URL": f"sqlite:///{tmp_path}/controlplane.sqlite3",
        "CONVOI_CONFIG_DIR": REPO / "agents_config",
        "CONVOI_EVENTS_SECRET": SECRET,
        "CONVOI_PUBLIC_LIVEKIT_URL": PUBLIC_URL,
        "CONVOI_AGENT_NAME": "convoi-test",
        # the app's own lease sweep never interferes (tests/test_controlplane_leases.py sweeps)
        "CONVOI_CALL_LEASE_SECONDS": 3600,
        "CONVOI_CALL_START_LEASE_SECONDS": 3600,
        **env,
    }
    return ControlPlaneSettings(**values)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    gateway = FakeLiveKitGateway()
    app = create_app(make_settings(tmp_path), gateway)
    with TestClient(app) as client:
        with app.state.convoi.database.session() as session:
            keys = {
                "sk": create_key(session, "acct_demo", "sk_live"),
                "pk": create_key(session, "acct_demo", "pk_live"),
                "other": create_key(session, "acct_other", "sk_live"),
            }
        yield Api(client, gateway, keys)


def assert_error(response: Any, status: int, code: str | None = None, field: Any = ...) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "field"}
    assert isinstance(error["code"], str) and re.fullmatch(r"[a-z_]+", error["code"])
    assert isinstance(error["message"], str) and error["message"]
    assert error["field"] is None or isinstance(error["field"], str)
    if code is not None:
        assert error["code"] == code, error
    if field is not ...:
        assert error["field"] == field, error
    return error


# ------------------------------------------------------------------------ seed examples


@pytest.mark.parametrize("example", SEED_EXAMPLES, ids=lambda e: e.name)
def test_seed_example_creates_the_call_the_seed_describes(api: Api, example: SeedExample) -> None:
    request = json.loads(example.text())
    response = api.create(request)
    assert response.status_code == 201, response.text
    call = response.json()
    is_web = request["type"] == "web"
    assert set(call) == (WEB_KEYS if is_web else PHONE_KEYS)
    assert re.fullmatch(r"call_[0-9A-Z]{26}", call["id"])
    assert call["object"] == "call"
    assert call["type"] == request["type"]
    assert call["status"] == "initiated"
    assert call["room_id"] == call["id"]
    assert call["duration_seconds"] == 0.0
    assert call["cost"] == {"amount": 0.0, "currency": "USD"}
    assert '"duration_seconds":0.0' in response.text and '"amount":0.0' in response.text
    assert call["metadata"] == request.get("metadata", {})
    assert TIMESTAMP.fullmatch(call["created_at"]) and call["updated_at"] == call["created_at"]

    workforce = SQUAD in (request.get("agent_id"), request.get("squad_id"))
    if is_web:
        assert call["agent_id"] == request["agent_id"]
        livekit = call["livekit"]
        assert set(livekit) == {"url", "token", "participant_identity"}
        assert livekit["url"] == PUBLIC_URL
        assert re.fullmatch(r"public-[0-9a-f]{16}", livekit["participant_identity"])
        (token,) = api.gateway.tokens
        assert livekit["token"] == token.jwt
        assert (token.room, token.identity) == (call["room_id"], livekit["participant_identity"])
        assert token.name == request.get("participant_name")
        assert token.ttl_seconds == 3600
    else:
        assert call["livekit"] is None
        assert call["agent_id"] == (None if workforce else request["agent_id"])
        assert call["squad_id"] == (SQUAD if workforce else None)
        assert call["phone_number_id"] == request["phone_number_id"]
        assert call["customer"] == {"number": request["customer"]["number"]}
        assert api.gateway.tokens == []

    assert list(api.gateway.rooms) == [call["room_id"]]
    (dispatch,) = api.gateway.dispatches
    assert (dispatch.room, dispatch.agent_name) == (call["room_id"], "convoi-test")
    spec = parse_callspec(dispatch.metadata)  # exactly what the worker will parse
    expected = parse_callspec({**request, "call_id": call["id"]})
    assert spec.definition is not None  # the account's definition travels with the call
    assert spec.model_copy(update={"definition": None}) == expected
    assert spec.customer == expected.customer  # name and metadata reach the worker

    read = api.get(call["id"])
    assert read.status_code == 200
    got = read.json()
    extensions = {"ended_reason", "fault", "detail", "transcript", "handoffs", "latency"} | (
        set() if is_web else {"transfer", "voicemail"}
    )
    assert set(got) == set(call) | extensions
    assert all(got[k] is None for k in extensions)  # nothing has ended yet
    if is_web:
        assert got["livekit"] == {**call["livekit"], "token": None}
    breakdown = {"by_component": None, "by_member": None, "unpriced": None}  # no report yet
    assert got["cost"] == {**call["cost"], **breakdown}
    assert {k: v for k, v in got.items() if k not in {"livekit", "cost", *extensions}} == {
        k: v for k, v in call.items() if k not in {"livekit", "cost"}
    }


def test_seed_full_example_as_written_is_rejected_for_its_number(api: Api) -> None:
    response = api.create(json.loads(OUTBOUND_FULL.text(substitute=False)))
    assert_error(response, 422, "invalid_request", "customer.number")
    assert api.gateway.rooms == {} and api.gateway.dispatches == []


@pytest.mark.parametrize("field", ["agent_id", "squad_id"])
def test_workforce_on_a_web_call_is_422(api: Api, field: str) -> None:
    response = api.create({"type": "web", field: SQUAD})
    assert_error(response, 422, "invalid_request", field)
    assert (
        "outbound_phone" in response.json()["error"]["message"]
        or "web" in response.json()["error"]["message"]
    )
    assert api.gateway.dispatches == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "web", "agent_id": "agt_doesnotexist0000"}, "agent_id"),
        (
            {**json.loads(WORKFORCE_IN_AGENT_ID.text()), "agent_id": "sqd_unknownsquad0000"},
            "squad_id",
        ),
        (
            {**json.loads(OUTBOUND_FULL.text()), "phone_number_id": "phn_unknown00000000"},
            "phone_number_id",
        ),
        (
            {
                **json.loads(WEB_MINIMAL.text()),
                "agent_overrides": {"knowledge_base_ids": ["kb_nope0000"]},
            },
            "agent_overrides.knowledge_base_ids[0]",
        ),
    ],
    ids=["agent", "squad", "phone_number", "knowledge_base"],
)
def test_unknown_definitions_are_422_naming_the_field(api: Api, body: dict, field: str) -> None:
    error = assert_error(api.create(body), 422, "invalid_request", field)
    assert "unknown" in error["message"]


# ------------------------------------------------------------------------ keys


def test_publishable_key_may_create_web_calls(api: Api) -> None:
    response = api.create(json.loads(WEB_OVERRIDES.text()), key="pk")
    assert response.status_code == 201, response.text
    assert api.get(response.json()["id"], key="pk").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (json.loads(WORKFORCE_IN_AGENT_ID.text()), "agent_id"),
        (json.loads(WORKFORCE_IN_AGENT_ID.text().replace('"agent_id"', '"squad_id"')), "squad_id"),
        (json.loads(OUTBOUND_FULL.text()), "type"),
        ({"type": "outbound_phone", "phone_number_id": "phn_unknown0000"}, "type"),
    ],
    ids=["workforce_agent_id", "workforce_squad_id", "phone_agent", "phone_invalid"],
)
def test_publishable_key_is_refused_workforce_and_phone_calls(
    api: Api, body: dict, field: str
) -> None:
    assert_error(api.create(body, key="pk"), 403, "permission_denied", field)
    assert api.gateway.rooms == {} and api.gateway.dispatches == []


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer sk_live_unknown0123456789abcdef",
        "Basic c2tfbGl2ZTp4",
        "sk_live_x",
    ],
)
def test_missing_or_unknown_key_is_401(api: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = api.client.post(CALLS, json=json.loads(WEB_MINIMAL.text()), headers=headers)
    assert_error(response, 401, None, "Authorization")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error(api.client.get(f"{CALLS}/call_x", headers=headers), 401)


def test_keys_are_stored_hashed(api: Api) -> None:
    with api.database.engine.connect() as connection:
        dump = "\n".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM api_keys"))
    for key in api.keys.values():
        assert key not in dump
        assert key[:12] in dump  # the display prefix only


def test_another_accounts_call_is_404(api: Api) -> None:
    call_id = api.create(json.loads(WEB_MINIMAL.text())).json()["id"]
    assert_error(api.get(call_id, key="other"), 404, "call_not_found", "id")
    assert_error(api.get("call_01HXNOSUCHCALL0000000000000"), 404, "call_not_found", "id")


def test_publishable_key_cannot_read_phone_calls(api: Api) -> None:
    call_id = api.create(json.loads(OUTBOUND_FULL.text())).json()["id"]
    assert api.get(call_id).status_code == 200
    assert_error(api.get(call_id, key="pk"), 404, "call_not_found")


# ------------------------------------------------------------------------ idempotency


def test_idempotent_retry_replays_the_original_response(api: Api) -> None:
    body = json.loads(WEB_OVERRIDES.text())
    first = api.create(body, **{"Idempotency-Key": "6f1c4b7e-0000-4000-8000-000000000001"})
    assert first.status_code == 201
    reordered = dict(reversed(list(body.items())))  # same JSON, other key order
    again = api.create(reordered, **{"Idempotency-Key": "6f1c4b7e-0000-4000-8000-000000000001"})
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(api.gateway.rooms) == 1 and len(api.gateway.dispatches) == 1
    assert len(api.gateway.tokens) == 1


def test_idempotency_key_with_a_different_body_is_422(api: Api) -> None:
    key = {"Idempotency-Key": "7c1f8e9a-key"}
    assert api.create(json.loads(WEB_MINIMAL.text()), **key).status_code == 201
    changed = {**json.loads(WEB_MINIMAL.text()), "participant_name": "someone else"}
    error = assert_error(
        api.create(changed, **key), 422, "idempotency_key_reused", "Idempotency-Key"
    )
    assert "different request body" in error["message"]
    assert len(api.gateway.dispatches) == 1


def test_idempotency_keys_are_per_account(api: Api) -> None:
    key = {"Idempotency-Key": "shared-key"}
    first = api.create(json.loads(WEB_MINIMAL.text()), **key)
    other = api.create(json.loads(WEB_MINIMAL.text()), key="other", **key)
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert len(api.gateway.dispatches) == 2


def test_idempotency_key_in_flight_is_409_and_expires_after_24h(api: Api) -> None:
    key = {"Idempotency-Key": "in-flight"}
    body = json.loads(WEB_MINIMAL.text())
    first = api.create(body, **key)
    with api.database.session() as session:  # as if the first request were still running
        session.execute(update(IdempotencyRecord).values(response_status=None, response_body=None))
        session.commit()
    assert_error(api.create(body, **key), 409, "idempotency_key_in_use", "Idempotency-Key")
    with api.database.session() as session:  # 24 h later, the key is forgotten
        day_ago = utcnow() - timedelta(hours=24, seconds=1)
        session.execute(update(IdempotencyRecord).values(created_at=day_ago, locked_at=day_ago))
        session.commit()
    later = api.create(body, **key)
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]


@pytest.mark.parametrize("value", ["", "x" * 256, "clé-non-ascii".encode(), "with space"])
def test_bad_idempotency_key_is_422(api: Api, value: str | bytes) -> None:
    headers: dict[str, Any] = {**api.headers(), "Idempotency-Key": value}
    response = api.client.post(CALLS, json=json.loads(WEB_MINIMAL.text()), headers=headers)
    assert_error(response, 422, None, "Idempotency-Key")


# ------------------------------------------------------------------------ error bodies


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ('{"type": "web"}', "agent_id"),
        ('{"agent_id": "agt_b88d642dd68747f28305c428b209xxxx"}', "type"),
        ('{"type": "fax", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx"}', "type"),
        ('{"type": "web", "agent_id": 42}', "agent_id"),
        ('{"type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx", "x": 1}', "x"),
        ('{"type": "outbound_phone", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx", '
         '"phone_number_id": "phn_c38155f043624745a66d2e28c185xxxx"}', "customer.number"),
        ('{"type": "outbound_phone", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx", '
         '"customer": {"name": "x"}, "phone_number_id": "phn_c38155f043624745a66d2e28c185xxxx"}',
         "customer.number"),
        ('{"type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx", '
         '"agent_overrides": {"voice": "x"}}', "agent_overrides.voice"),
        ('{"type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx", '
         '"agent_overrides": {"llm": {"temperature": 9}}}', "agent_overrides.llm.temperature"),
        ('{"type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx", '
         '"customer": {"number": "+971501234567"}}', "customer"),
        ('{"type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx", "metadata": []}',
         "metadata"),
        ('{"type": "web", "agent_id": "agt_B88D"}', "agent_id"),
        ('{"type": "web", "type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx"}', None),
        ('{"type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx", "metadata": {"a": NaN}}', None),
        ("[]", None),
        ("{not json", None),
        ("", None),
    ],
)  # fmt: skip
def test_every_4xx_names_the_field(api: Api, content: str, field: str | None) -> None:
    headers = api.headers(**{"Content-Type": "application/json"})
    response = api.client.post(CALLS, content=content, headers=headers)
    assert_error(response, 422, None, field)
    assert api.gateway.dispatches == []


def test_framework_errors_use_the_error_body(api: Api) -> None:
    assert_error(api.client.get("/api/v1/public/nothing-here"), 404, "not_found", None)
    assert_error(api.client.delete(f"{CALLS}/call_x", headers=api.headers()), 405)


# ------------------------------------------------------------------------ LiveKit failures


def test_livekit_unavailable_is_503_and_the_call_is_stored_failed(api: Api) -> None:
    api.gateway.fail_next("create_room", LiveKitUnavailable("LiveKit unreachable"))
    key = {"Idempotency-Key": "retry-me"}
    error = assert_error(
        api.create(json.loads(WEB_MINIMAL.text()), **key), 503, "livekit_unavailable"
    )
    with api.database.session() as session:
        (failed,) = session.scalars(select(Call)).all()
    assert failed.id in error["message"]
    assert (failed.status, failed.ended_reason) == ("failed", "provider_error")
    got = api.get(failed.id).json()
    assert (got["status"], got["ended_reason"]) == ("failed", "provider_error")
    retry = api.create(json.loads(WEB_MINIMAL.text()), **key)  # failures are not replayed
    assert retry.status_code == 201 and retry.json()["id"] != failed.id


def test_dispatch_refused_is_502_and_the_room_is_deleted(api: Api) -> None:
    api.gateway.fail_next("dispatch", LiveKitRejected("LiveKit could not dispatch"))
    assert_error(api.create(json.loads(OUTBOUND_FULL.text())), 502, "livekit_error")
    assert api.gateway.rooms == {} and len(api.gateway.deleted_rooms) == 1


def test_real_gateway_with_livekit_down_is_503(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_settings(tmp_path, LIVEKIT_URL=f"ws://127.0.0.1:{port}")
    app = create_app(settings)
    with TestClient(app) as client:
        with app.state.convoi.database.session() as session:
            key = create_key(session, "acct_demo", "sk_live")
        response = client.post(
            CALLS, json=json.loads(WEB_MINIMAL.text()), headers={"Authorization": f"Bearer {key}"}
        )
    assert_error(response, 503, "livekit_unavailable")


# ------------------------------------------------------------------------ worker events


def test_signed_events_update_what_get_returns(api: Api) -> None:
    call = api.create(json.loads(OUTBOUND_FULL.text())).json()
    call_id, metadata = call["id"], {"campaign": "may-outreach"}
    assert api.event(call_id, 1, "ringing", metadata=metadata).status_code == 201
    response = api.event(
        call_id, 2, "active", event_type="call.progress", duration_seconds=3.5,
        cost="0.0123456789", metadata=metadata,
    )  # fmt: skip
    assert response.status_code == 201 and response.json()["status"] == "stored"
    got = api.get(call_id).json()
    assert (got["status"], got["duration_seconds"]) == ("active", 3.5)
    breakdown = {"by_component": {}, "by_member": {}, "unpriced": []}  # none reported
    assert got["cost"] == {"amount": 0.012346, "currency": "USD", **breakdown}
    assert got["updated_at"] >= call["updated_at"]

    ended = api.event(
        call_id, 4, "completed", event_type="call.ended", duration_seconds=42.25,
        cost="0.0905", ended_reason="customer_hangup", metadata=metadata,
    )  # fmt: skip
    assert ended.status_code == 201
    stale = api.event(call_id, 3, "active", duration_seconds=20.0, cost="0.05")
    assert stale.status_code == 201  # stored, but older than what we have
    got = api.get(call_id).json()
    assert (got["status"], got["ended_reason"]) == ("completed", "customer_hangup")
    assert (got["duration_seconds"], got["cost"]["amount"]) == (42.25, 0.0905)
    assert got["metadata"] == metadata
    with api.database.session() as session:
        assert session.get(Call, call_id).cost_amount == "0.0905"  # type: ignore[union-attr]


def test_get_shows_why_a_call_ended_and_its_transfer_and_voicemail_reports(api: Api) -> None:
    call_id = api.create(json.loads(OUTBOUND_FULL.text())).json()["id"]
    transfer = {
        "destination": "+15550000100", "name": "billing_desk", "mode": "cold",
        "at": 1764619200.5, "succeeded": True, "error": None,
    }  # fmt: skip
    voicemail = {
        "verdict": "human", "reason": "short_greeting", "detection_seconds": 1.2,
        "action": "greeted",
    }  # fmt: skip
    ended = api.event(
        call_id, 1, "completed", event_type="call.ended", ended_reason="transferred",
        detail="transferred to billing_desk", transfer=transfer, voicemail=voicemail,
    )  # fmt: skip
    assert ended.status_code == 201
    got = api.get(call_id).json()
    assert (got["status"], got["ended_reason"], got["fault"]) == (
        "completed",
        "transferred",
        None,
    )
    assert got["detail"] == "transferred to billing_desk"
    assert (got["transfer"], got["voicemail"]) == (transfer, voicemail)

    refused = api.create(json.loads(OUTBOUND_FULL.text())).json()["id"]
    api.event(
        refused, 1, "busy", event_type="call.ended", ended_reason="dial_busy",
        fault="customer", detail="SIP 486 Busy Here",
    )  # fmt: skip
    got = api.get(refused).json()
    assert (got["status"], got["fault"], got["detail"]) == ("busy", "customer", "SIP 486 Busy Here")
    assert (got["transfer"], got["voicemail"]) == (None, None)


def test_duplicate_event_is_acknowledged_once(api: Api) -> None:
    call_id = api.create(json.loads(WEB_MINIMAL.text())).json()["id"]
    body, headers = signed_event(SECRET, call_id, 1, "active", event_id="evt_" + "a" * 32)
    url = f"/internal/v1/calls/{call_id}/events"
    assert api.client.post(url, content=body, headers=headers).status_code == 201
    again = api.client.post(url, content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"


def test_bad_signature_is_401(api: Api) -> None:
    call_id = api.create(json.loads(WEB_MINIMAL.text())).json()["id"]
    body, headers = signed_event("not-the-secret", call_id, 1, "completed")
    url = f"/internal/v1/calls/{call_id}/events"
    assert_error(api.client.post(url, content=body, headers=headers), 401, "invalid_signature")
    tampered_body, good = signed_event(SECRET, call_id, 1, "active")
    tampered = tampered_body.replace(b'"active"', b'"completed"')
    assert_error(api.client.post(url, content=tampered, headers=good), 401, "invalid_signature")
    assert_error(api.client.post(url, content=tampered_body), 401, "invalid_signature")
    assert api.get(call_id).json()["status"] == "initiated"


def test_event_errors(api: Api) -> None:
    call_id = api.create(json.loads(WEB_MINIMAL.text())).json()["id"]
    body, headers = signed_event(SECRET, "call_01HXNOSUCHCALL0000000000000", 1, "active")
    url = "/internal/v1/calls/call_01HXNOSUCHCALL0000000000000/events"
    assert_error(api.client.post(url, content=body, headers=headers), 404, "call_not_found")
    body, headers = signed_event(SECRET, call_id, 1, "active")
    other = "/internal/v1/calls/call_01HXOTHER000000000000000000/events"
    assert_error(api.client.post(other, content=body, headers=headers), 422, "call_id_mismatch")
    junk = b'{"id": "evt_1"}'
    headers = signed_event(SECRET, call_id, 1, "active")[1]
    from convoi.reporting.signing import signature_headers

    headers = signature_headers(SECRET, junk, "evt_1")
    url = f"/internal/v1/calls/{call_id}/events"
    assert_error(api.client.post(url, content=junk, headers=headers), 422, "invalid_event")


# ------------------------------------------------------------------------ OpenAPI, settings


def test_openapi_document_is_served_with_the_seed_descriptions(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert set(document["paths"]) >= {
        CALLS, f"{CALLS}/{{id}}",
        f"{CALLS}/{{id}}/end", f"{CALLS}/{{id}}/events",  # issue 19: hang-up, deliveries
        "/api/v1/public/webhooks", "/api/v1/public/webhooks/{id}",
        "/api/v1/public/agents", "/api/v1/public/agents/{id}",  # issue 20: definitions
    }  # fmt: skip
    schemas = document["components"]["schemas"]
    assert schemas["CustomerCreate"]["properties"]["number"]["description"] == (
        "E.164 (e.g. +971501234567)."
    )
    assert (
        "Display name for the participant in LiveKit"
        in (schemas["CallCreate"]["properties"]["participant_name"]["description"])
    )
    assert "room_id" in document["info"]["description"]
    post = document["paths"][CALLS]["post"]
    assert post["summary"] == "Create a Call"
    assert {"201", "401", "403", "409", "422", "502", "503"} <= set(post["responses"])
    assert "HTTPValidationError" not in schemas
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert api.client.get("/docs").status_code == 200


def test_settings_refuse_placeholder_secrets_outside_local_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LIVEKIT_API_SECRET"):
        make_settings(tmp_path, CONVOI_ENVIRONMENT="production")
    real = make_settings(
        tmp_path,
        CONVOI_ENVIRONMENT="production",
        LIVEKIT_API_KEY="APIprodkey",
        LIVEKIT_API_SECRET="a-long-real-secret",
    )
    assert real.placeholder_secrets() == []
    assert make_settings(tmp_path, CONVOI_PUBLIC_LIVEKIT_URL=None).public_livekit_url == (
        "ws://127.0.0.1:7880"
    )


def test_dev_keys_from_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, CONVOI_DEV_API_KEYS="acct_demo=sk_live_localdevkey0000000000"
    )
    with TestClient(create_app(settings, FakeLiveKitGateway())) as client:
        headers = {"Authorization": "Bearer sk_live_localdevkey0000000000"}
        response = client.post(CALLS, json=json.loads(WEB_MINIMAL.text()), headers=headers)
    assert response.status_code == 201


def test_cli_migrate_and_create_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from convoi.controlplane.cli import main

    monkeypatch.setenv("CONVOI_DATABASE_URL", f"sqlite:///{tmp_path}/cli.sqlite3")
    assert main(["migrate"]) == 0
    assert "0006_calls_in_progress_index" in capsys.readouterr().out
    assert main(["create-key", "--account", "acct_demo", "--kind", "pk_live"]) == 0
    key = capsys.readouterr().out.strip()
    assert re.fullmatch(r"pk_live_[0-9a-f]{48}", key)
    assert main(["create-key", "--account", "not an account"]) == 2
    monkeypatch.setenv("CONVOI_ENVIRONMENT", "production")
    assert main(["migrate"]) == 2


def test_control_plane_server_harness(tmp_path: Path) -> None:
    import httpx

    from convoi.devstack.controlplane_harness import ControlPlaneServer

    gateway = FakeLiveKitGateway()
    with ControlPlaneServer(make_settings(tmp_path), gateway) as server:
        key = server.create_key("acct_e2e")
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(
            f"{server.url}{CALLS}", json=json.loads(WEB_MINIMAL.text()), headers=headers
        )
        assert created.status_code == 201, created.text
        env = server.worker_env()
        assert env["CONVOI_API_URL"] == server.url and env["CONVOI_EVENTS_SECRET"] == SECRET
        call_id = created.json()["id"]
        body, signed = signed_event(SECRET, call_id, 1, "active")
        url = f"{server.url}/internal/v1/calls/{call_id}/events"
        assert httpx.post(url, content=body, headers=signed).status_code == 201
        got = httpx.get(f"{server.url}{CALLS}/{call_id}", headers=headers).json()
        assert got["status"] == "active"
    assert len(gateway.dispatches) == 1
