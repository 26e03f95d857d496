"""The calls list (cursor pagination, filters, stable under concurrent inserts), the hang-up API
(``POST /calls/{id}/end``: active → the job is told, not yet active → canceled, ended → 409),
the job's listener for it, and the outbox's claims on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from convoi.controlplane.db import Database
from convoi.controlplane.db.models import Account, WebhookDelivery, WebhookEndpoint
from convoi.controlplane.webhooks_outbox import (
    Attempt,
    RetryPolicy,
    claim_due,
    record_attempt,
)
from convoi.room_control import TOPIC, encode_end
from convoi.worker.remote_end import RemoteEnd
from tests import test_controlplane_db, test_controlplane_webhooks
from tests.fixtures.seed_examples import OUTBOUND_FULL, WEB_MINIMAL
from tests.test_controlplane_api import Api, assert_error
from tests.test_controlplane_webhooks import register
from tests.webhook_receiver import WebhookReceiver

CALLS = "/api/v1/public/calls"

api = test_controlplane_webhooks.api  # the fixtures: an app with fast webhooks, a database
database_url = test_controlplane_db.database_url
database = test_controlplane_db.database


def page(api: Api, **params: Any) -> dict[str, Any]:
    response = api.client.get(CALLS, params=params, headers=api.headers())
    assert response.status_code == 200, response.text
    return dict(response.json())


# ------------------------------------------------------------------------------ list


def test_pages_newest_first_and_stay_stable_while_calls_are_created(api: Api) -> None:
    created = [api.create(json.loads(WEB_MINIMAL.text())).json()["id"] for _ in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        body = page(api, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [c["id"] for c in body["data"]]
        api.create(json.loads(WEB_MINIMAL.text()))  # a new call between pages
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))  # no repeat, no gap, newest first
    first = page(api, limit=3)["data"][0]
    assert first == api.get(first["id"]).json()  # the GET shape


def test_filters_narrow_the_list(api: Api) -> None:
    web = api.create(json.loads(WEB_MINIMAL.text())).json()["id"]
    phone = api.create(json.loads(OUTBOUND_FULL.text())).json()["id"]
    assert api.event(phone, 1, "ringing").status_code == 201
    assert [c["id"] for c in page(api, type="web")["data"]] == [web]
    assert [c["id"] for c in page(api, status="ringing")["data"]] == [phone]
    agent = api.get(web).json()["agent_id"]
    assert web in [c["id"] for c in page(api, agent_id=agent)["data"]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert page(api, created_after=future)["data"] == []
    assert len(page(api, created_before=future)["data"]) == 2
    assert page(api, limit=1)["next_cursor"] is not None
    other = api.client.get(CALLS, headers=api.headers("other")).json()
    assert other == {"object": "list", "data": [], "next_cursor": None}


def test_list_errors(api: Api) -> None:
    assert_error(api.client.get(CALLS, headers=api.headers("pk")), 403, "permission_denied")
    assert_error(
        api.client.get(CALLS, params={"cursor": "garbage"}, headers=api.headers()),
        422, "invalid_cursor", "cursor",
    )  # fmt: skip
    assert_error(
        api.client.get(CALLS, params={"limit": 101}, headers=api.headers()), 422, field="limit"
    )
    assert_error(
        api.client.get(CALLS, params={"status": "bogus"}, headers=api.headers()), 422, None
    )
    naive = {"created_after": "2026-06-05T10:00:00"}
    assert_error(api.client.get(CALLS, params=naive, headers=api.headers()), 422)


# ------------------------------------------------------------------------------ end


def end(api: Api, call_id: str, key: str = "sk") -> Any:
    return api.client.post(f"{CALLS}/{call_id}/end", headers=api.headers(key))


def test_ending_an_active_call_tells_its_job_and_is_idempotent(api: Api) -> None:
    call_id = api.create(json.loads(WEB_MINIMAL.text())).json()["id"]
    assert api.event(call_id, 1, "active").status_code == 201
    first, again = end(api, call_id), end(api, call_id, key="pk")
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["status"] == "active"  # it ends after the agent's sentence
    assert api.gateway.sent_data == [(call_id, TOPIC, encode_end(call_id))] * 2
    ended = api.event(call_id, 2, "completed", event_type="call.ended", ended_reason="api_hangup")
    assert ended.status_code == 201
    got = api.get(call_id).json()
    assert (got["status"], got["ended_reason"], got["fault"]) == ("completed", "api_hangup", None)
    assert_error(end(api, call_id), 409, "call_already_ended", "id")


def test_ending_a_call_not_yet_answered_cancels_it(api: Api) -> None:
    with WebhookReceiver() as receiver:
        register(api, receiver.url)
        call_id = api.create(json.loads(OUTBOUND_FULL.text())).json()["id"]
        assert api.event(call_id, 1, "ringing").status_code == 201
        response = end(api, call_id)
        got = receiver.wait_for(lambda r: len(r) >= 3)
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["ended_reason"], body["fault"]) == ("canceled", "api_hangup", None)
    assert call_id in api.gateway.deleted_rooms and api.gateway.sent_data == []
    assert [(e.event["type"], e.event["data"]["status"]) for e in got] == [
        ("call.status", "ringing"), ("call.status", "canceled"), ("call.ended", "canceled"),
    ]  # fmt: skip
    # the worker's later report of the room going away changes nothing: the first end wins
    late = api.event(call_id, 2, "failed", event_type="call.ended", ended_reason="worker_error")
    assert late.status_code == 201
    assert api.get(call_id).json()["status"] == "canceled"
    assert_error(end(api, call_id), 409, "call_already_ended")


def test_end_is_404_for_calls_the_key_may_not_see(api: Api) -> None:
    phone = api.create(json.loads(OUTBOUND_FULL.text())).json()["id"]
    assert_error(end(api, phone, key="other"), 404, "call_not_found")
    assert_error(end(api, phone, key="pk"), 404, "call_not_found")
    assert_error(end(api, "call_nope"), 404, "call_not_found")


# ------------------------------------------------------------------------------ the job


@dataclass
class Packet:
    data: bytes
    topic: str | None
    participant: object | None = None


class FakeRoom:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def on(self, name: str, handler: Any) -> None:
        self.handlers[name] = handler


def test_the_job_acts_only_on_the_servers_end_request_for_its_call() -> None:
    room, ended = FakeRoom(), []
    remote = RemoteEnd(room, "call_abc", lambda: ended.append(1))  # type: ignore[arg-type]
    remote.start()
    deliver = room.handlers["data_received"]
    deliver(Packet(encode_end("call_abc"), TOPIC, participant=object()))  # a browser forging it
    deliver(Packet(encode_end("call_other"), TOPIC))
    deliver(Packet(encode_end("call_abc"), "chat"))
    deliver(Packet(b"{not json", TOPIC))
    assert ended == []
    deliver(Packet(encode_end("call_abc"), TOPIC))
    assert ended == [1]
    remote.stop()
    deliver(Packet(encode_end("call_abc"), TOPIC))
    assert ended == [1]


# ------------------------------------------------------------------------------ outbox claims


def _outbox(database: Database, rows: int, calls: int = 1) -> None:
    now = datetime.now(UTC)
    with database.session() as session:
        session.add(Account(id="acct_demo"))
        session.add(WebhookEndpoint(id="whk_1", account_id="acct_demo", url="http://x",
                                    secret="whsec_x", created_at=now))  # fmt: skip
        session.flush()  # the endpoint first (no ORM relationship orders the inserts)
        for n in range(rows):
            session.add(
                WebhookDelivery(
                    event_id=f"evt_{n}", endpoint_id="whk_1", account_id="acct_demo",
                    call_id=f"call_{n % calls}", type="call.status", payload="{}",
                    status="pending", attempts=0, next_attempt_at=now, created_at=now,
                )
            )  # fmt: skip
        session.commit()


def test_claims_never_overlap_and_keep_each_calls_order(database: Database) -> None:
    _outbox(database, rows=40, calls=10)
    policy = RetryPolicy()
    taken: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claim(owner: str) -> None:
        barrier.wait()
        with database.session() as session:
            taken[owner] = [c.id for c in claim_due(session, owner, 40, datetime.now(UTC), policy)]

    threads = [threading.Thread(target=claim, args=(f"dlv_{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = [i for owned in taken.values() for i in owned]
    assert len(ids) == len(set(ids)) == 10  # one per call: the rest wait for their previous one
    with database.session() as session:
        firsts = session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.claimed_by.is_not(None))
        ).all()
        assert sorted(firsts) == sorted(ids) == list(range(1, 11))


def test_failed_attempts_back_off_then_give_up_and_free_the_next(database: Database) -> None:
    _outbox(database, rows=2)
    policy = RetryPolicy(base_seconds=60, max_seconds=3600, window=timedelta(hours=1))
    now = datetime.now(UTC)
    with database.session() as session:
        (first,) = claim_due(session, "dlv_a", 10, now, policy)
        assert (
            record_attempt(session, first.id, "dlv_a", Attempt(False, 500, "HTTP 500"), now, policy)
            == "pending"
        )
        assert claim_due(session, "dlv_a", 10, now + timedelta(seconds=59), policy) == []
        moment = now + timedelta(seconds=60)
        for _ in range(6):  # 60, 120, 240, 480, 960 s… until past the hour
            claimed = claim_due(session, "dlv_a", 10, moment, policy)
            assert [c.id for c in claimed] == [first.id]
            status = record_attempt(
                session, first.id, "dlv_a", Attempt(False, None, "timed out"), moment, policy
            )
            row = session.get(WebhookDelivery, first.id)
            assert row is not None
            if status == "failed":
                break
            moment = row.next_attempt_at
        assert status == "failed" and row.attempts == 6
        (second,) = claim_due(session, "dlv_a", 10, moment, policy)  # the call's next event
        assert second.id == first.id + 1
        assert (
            record_attempt(session, second.id, "dlv_b", Attempt(True, 200), moment, policy) is None
        )  # not its claim


def test_a_slow_endpoint_gets_at_most_its_share_of_the_slots(database: Database) -> None:
    _outbox(database, rows=10, calls=10)  # ten calls for whk_1
    now = datetime.now(UTC)
    with database.session() as session:
        session.add(WebhookEndpoint(id="whk_2", account_id="acct_demo", url="http://y",
                                    secret="whsec_y", created_at=now))  # fmt: skip
        session.flush()
        for n in range(2):
            session.add(
                WebhookDelivery(
                    event_id=f"evt_b{n}", endpoint_id="whk_2", account_id="acct_demo",
                    call_id=f"call_b{n}", type="call.status", payload="{}", status="pending",
                    attempts=0, next_attempt_at=now, created_at=now,
                )
            )  # fmt: skip
        session.commit()
        claimed = claim_due(session, "dlv_a", 8, now, RetryPolicy(), per_endpoint=4)
        again = claim_due(session, "dlv_b", 8, now, RetryPolicy(), per_endpoint=4)
    by_endpoint = [c.url for c in claimed]
    assert (by_endpoint.count("http://x"), by_endpoint.count("http://y")) == (4, 2)
    assert again == []  # whk_1 is at its share across deliverers; whk_2 has nothing left
