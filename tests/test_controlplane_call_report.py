"""A call's GET with a secret key carries the worker's report (cost breakdown while it runs;
transcript, handoffs, per-turn latency once it has ended); publishable keys and the list do not
(customer speech stays behind the secret key), and the OpenAPI schema documents the fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from convoi.controlplane import create_app
from convoi.controlplane.call_report import report_fields
from convoi.controlplane.keys import create_key
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from convoi.reporting.events import CallEvent, Cost
from tests import test_controlplane_db, test_controlplane_webhooks
from tests.fixtures.seed_examples import OUTBOUND_FULL, WEB_MINIMAL
from tests.test_controlplane_api import Api, make_settings
from tests.test_controlplane_webhooks import post_event

api = test_controlplane_webhooks.api  # the fixture: an app on a fresh database, three keys
database_url = test_controlplane_db.database_url  # SQLite, and PostgreSQL (marker postgres)

CALLS = "/api/v1/public/calls"
REPORT_KEYS = ("transcript", "handoffs", "latency")
TRANSCRIPT = [
    {"role": "assistant", "text": "Hi Dana, how can I help?", "at": 10.0, "member": "agent"},
    {"role": "user", "text": "A question about my bill.", "at": 12.5, "member": "agent"},
    {"role": "assistant", "text": "Your balance is 42 dollars.", "at": 14.0, "member": "agent"},
]
LATENCY = [{"member": "agent", "e2e_latency": 0.82, "llm_node_ttft": 0.31, "tts_node_ttfb": 0.2}]
COST = {
    "amount": "0.0123456",
    "by_component": {"llm": "0.0011", "stt": "0.0002", "tts": "0.0003", "platform": "0.0107456"},
    "by_member": {"agent": "0.0016"},
}


def web_call(api: Api) -> str:
    return str(api.create(json.loads(WEB_MINIMAL.text())).json()["id"])


def end_web_call(api: Api, call_id: str) -> None:
    """The worker reports: active (with a running cost), then call.ended with its report."""
    running = {"amount": "0.001", "by_component": {"llm": "0.001"}, "by_member": {"agent": "0.001"}}
    assert post_event(api, call_id, sequence=1, type="call.status", status="active",
                      cost=running).status_code == 201  # fmt: skip
    ended = post_event(
        api,
        call_id,
        sequence=2,
        type="call.ended",
        status="completed",
        ended_reason="customer_hangup",
        duration_seconds=9.5,
        cost=COST,
        transcript=TRANSCRIPT,
        handoffs=[],
        latency=LATENCY,
    )
    assert ended.status_code == 201, ended.text


def get(api: Api, call_id: str, key: str = "sk") -> dict[str, Any]:
    response = api.get(call_id, key)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_new_call_has_no_report_yet(api: Api) -> None:
    call = get(api, web_call(api))
    assert [call[k] for k in REPORT_KEYS] == [None, None, None]
    assert call["cost"] == {
        "amount": 0.0,
        "currency": "USD",
        "by_component": None,
        "by_member": None,
        "unpriced": None,
    }


def test_the_cost_breakdown_follows_the_running_call(api: Api) -> None:
    call_id = web_call(api)
    running = {"amount": "0.0042", "by_component": {"llm": "0.004", "stt": "0.0002"}}
    assert post_event(api, call_id, sequence=1, type="call.status", status="active",
                      cost=running).status_code == 201  # fmt: skip
    call = get(api, call_id)
    assert call["status"] == "active"
    assert call["cost"]["by_component"] == {"llm": 0.004, "stt": 0.0002}
    assert call["cost"]["by_member"] == {} and call["cost"]["unpriced"] == []
    assert call["transcript"] is None and call["latency"] is None  # not ended yet


def test_an_ended_call_shows_transcript_latency_and_breakdown_to_a_secret_key(api: Api) -> None:
    call_id = web_call(api)
    end_web_call(api, call_id)
    call = get(api, call_id)
    assert (call["status"], call["ended_reason"]) == ("completed", "customer_hangup")
    assert [(t["role"], t["member"], t["text"]) for t in call["transcript"]] == [
        (t["role"], t["member"], t["text"]) for t in TRANSCRIPT
    ]
    assert all(t["source"] == "voice" and t["interrupted"] is False for t in call["transcript"])
    assert call["handoffs"] == []
    assert call["latency"][0]["e2e_latency"] == 0.82
    assert call["latency"][0]["member"] == "agent"
    assert call["cost"]["amount"] == 0.012346  # rounded to 6 decimals, half even
    assert call["cost"]["by_component"] == {
        "llm": 0.0011,
        "stt": 0.0002,
        "tts": 0.0003,
        "platform": 0.010746,
    }
    assert call["cost"]["by_member"] == {"agent": 0.0016}


def test_a_late_older_event_does_not_replace_the_report(api: Api) -> None:
    call_id = web_call(api)
    end_web_call(api, call_id)
    late = post_event(api, call_id, sequence=3, type="call.progress", status="active",
                      cost={"amount": "9", "by_component": {"llm": "9"}})  # fmt: skip
    assert late.status_code == 201  # stored, never applied: the call has ended
    call = get(api, call_id)
    assert call["status"] == "completed"
    assert call["cost"]["by_component"]["llm"] == 0.0011
    assert len(call["transcript"]) == 3


def test_publishable_keys_and_the_list_get_no_report(api: Api) -> None:
    call_id = web_call(api)
    end_web_call(api, call_id)
    seen_by_pk = get(api, call_id, "pk")  # pk_live_ may read its account's web calls
    assert seen_by_pk["status"] == "completed"
    assert [seen_by_pk[k] for k in REPORT_KEYS] == [None, None, None]
    assert seen_by_pk["cost"]["by_component"] is None and seen_by_pk["cost"]["amount"] > 0
    listed = api.client.get(CALLS, headers=api.headers()).json()["data"]
    assert [c["id"] for c in listed] == [call_id]
    assert [listed[0][k] for k in REPORT_KEYS] == [None, None, None]
    assert api.get(call_id, "other").status_code == 404  # another account: still not found


def test_phone_calls_carry_the_report_too(api: Api) -> None:
    call_id = str(api.create(json.loads(OUTBOUND_FULL.text())).json()["id"])
    handoff = {"from_member": "intake", "to_member": "billing", "reason": "bill", "at": 13.0}
    ended = post_event(api, call_id, sequence=1, type="call.ended", status="completed",
                       ended_reason="customer_hangup", cost=COST, transcript=TRANSCRIPT,
                       handoffs=[handoff], latency=LATENCY)  # fmt: skip
    assert ended.status_code == 201, ended.text
    call = get(api, call_id)
    assert call["handoffs"] == [handoff]
    assert len(call["transcript"]) == 3


def test_report_fields_is_pure_and_rounds_money() -> None:
    assert report_fields(None, None) == {"transcript": None, "handoffs": None, "latency": None}
    event = CallEvent(
        id="evt_1",
        call_id="call_1",
        sequence=1,
        type="call.ended",
        created_at=1.0,
        status="completed",
        cost=Cost.model_validate({"amount": "1", "by_component": {"llm": "0.00000049"}}),
        transcript=None,
    )
    fields = report_fields(event, event)
    assert fields["cost"] == {"by_component": {"llm": 0.0}, "by_member": {}, "unpriced": []}
    assert fields["transcript"] == [] and fields["latency"] == []


def test_the_openapi_schema_documents_the_report(api: Api) -> None:
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    web = schemas["WebCall"]["properties"]
    for name in REPORT_KEYS:
        assert "Secret keys only" in web[name]["description"], name
    assert web["cost"]["$ref"].endswith("/CostRead")
    cost = schemas["CostRead"]["properties"]
    assert {"by_component", "by_member", "unpriced"} <= set(cost)
    assert "member" in schemas["TranscriptEntry"]["properties"]
    assert "e2e_latency" in schemas["TurnLatency"]["properties"]
    assert "by_component" not in schemas["CostPublic"]["properties"]  # the 201 body: unchanged


def test_the_report_is_read_back_on_every_database(database_url: str, tmp_path: Path) -> None:
    app = create_app(
        make_settings(tmp_path, CONVOI_DATABASE_URL=database_url), FakeLiveKitGateway()
    )
    with TestClient(app) as client:
        with app.state.convoi.database.session() as session:
            keys = {"sk": create_key(session, "acct_demo", "sk_live")}
        on_db = Api(client, FakeLiveKitGateway(), keys)
        call_id = web_call(on_db)
        end_web_call(on_db, call_id)
        call = get(on_db, call_id)
    assert [t["text"] for t in call["transcript"]] == [t["text"] for t in TRANSCRIPT]
    assert call["cost"]["by_member"] == {"agent": 0.0016}
    assert call["latency"][0]["e2e_latency"] == 0.82
