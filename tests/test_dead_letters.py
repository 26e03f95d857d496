"""Permanent refusals end in the outbox's dead letters after a bounded number of tries, logged once.

A fake receiver on a free port answers what each test wants (404 for an unknown call, 422 for one
event, 503 for a while, 401); the outbox file is then read to see where each event ended.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from fastapi.testclient import TestClient

from convoi.controlplane import create_app
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway, signed_event
from convoi.reporting.delivery import DeliverySettings, EventDelivery
from convoi.reporting.events import CallEvent
from convoi.reporting.outbox import Outbox
from convoi.reporting.refusals import Verdict, classify, error_code
from convoi.worker.cli import main as worker_cli
from tests.helpers import free_port, make_event, wait_until
from tests.test_controlplane_api import SECRET as API_SECRET
from tests.test_controlplane_api import make_settings

SECRET = "dead-letter-test-secret"
BODY_SECRET = "receiver-detail-that-must-not-be-logged"
BOUND = 4
"""``dead_letter_after`` of the senders in these tests."""
Answer = Callable[[CallEvent, int], tuple[int, dict[str, object]]]
"""(the event POSTed, how many POSTs it had before) → (status, JSON body)."""


def created(event: CallEvent, tries: int) -> tuple[int, dict[str, object]]:
    return 201, {"status": "stored"}


def call_not_found(event: CallEvent, tries: int) -> tuple[int, dict[str, object]]:
    body = {"error": {"code": "call_not_found", "message": BODY_SECRET, "field": "call_id"}}
    return 404, body


class FakeReceiver:
    """Answers each event POST with ``answer`` and records (event id, status) in ``log``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.answer: Answer = created
        self.log: list[tuple[str, int]] = []
        self._runner: web.AppRunner | None = None

    def posts(self, event: CallEvent) -> int:
        return sum(1 for event_id, _ in self.log if event_id == event.id)

    async def _handle(self, request: web.Request) -> web.Response:
        event = CallEvent.model_validate_json(await request.read())
        status, body = self.answer(event, self.posts(event))
        self.log.append((event.id, status))
        return web.json_response(body, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/internal/v1/calls/{call_id}/events", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[FakeReceiver]:
    receiver = FakeReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def settings(tmp_path: Path, receiver: FakeReceiver) -> DeliverySettings:
    return DeliverySettings(
        api_url=receiver.url,
        events_secret=SECRET,
        outbox_path=tmp_path / "outbox.sqlite3",
        backoff_initial=0.01,
        backoff_max=0.05,
        request_timeout=5.0,
    )


@pytest.fixture
async def deliveries() -> AsyncIterator[list[EventDelivery]]:
    started: list[EventDelivery] = []
    yield started
    for delivery in started:
        await delivery.aclose(timeout=0)


def start(
    deliveries: list[EventDelivery], settings: DeliverySettings, **kw: object
) -> EventDelivery:
    delivery = EventDelivery(settings, dead_letter_after=BOUND, **kw)  # type: ignore[arg-type]
    delivery.start()
    deliveries.append(delivery)
    return delivery


async def add(delivery: EventDelivery, call_id: str, count: int) -> list[CallEvent]:
    events = []
    for _ in range(count):
        event = make_event(call_id, await delivery.next_sequence(call_id))
        await delivery.add(event)
        events.append(event)
    return events


def loud(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


# ---- the verdicts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (409, Verdict.DELIVERED),
        (404, Verdict.CALL_UNKNOWN),
        (410, Verdict.CALL_UNKNOWN),
        (400, Verdict.REFUSED),
        (413, Verdict.REFUSED),
        (422, Verdict.REFUSED),
        (401, Verdict.MISCONFIGURED),
        (403, Verdict.MISCONFIGURED),
        (301, Verdict.MISCONFIGURED),
        (405, Verdict.MISCONFIGURED),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (None, Verdict.RETRY),
    ],
)
def test_statuses_are_classified(status: int | None, verdict: Verdict) -> None:
    assert classify(status) is verdict
    assert verdict.permanent == (status in (404, 410, 400, 413, 422))


def test_error_code_is_read_from_both_receivers_and_nothing_else() -> None:
    assert error_code(b'{"error": {"code": "call_not_found", "message": "x"}}') == "call_not_found"
    assert error_code(b'{"error": "invalid_signature", "detail": "y"}') == "invalid_signature"
    assert error_code(b"<html>502</html>") is None
    assert error_code(b'{"error": {"message": "no code"}}') is None
    assert error_code(b'{"error": "bad\\ncode"}') is None  # not printable: not trusted
    assert error_code(b"[1]") is None


# ---- 404: the call is unknown -------------------------------------------------------------------


async def test_unknown_call_is_dead_lettered_after_bounded_tries_and_logged_once(
    receiver: FakeReceiver,
    settings: DeliverySettings,
    deliveries: list[EventDelivery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="convoi.reporting.delivery")
    receiver.answer = lambda e, n: call_not_found(e, n) if e.call_id == "call_x" else (201, {})
    delivery = start(deliveries, settings)
    unknown = await add(delivery, "call_x", 3)
    known = await add(delivery, "call_y", 2)

    assert await delivery.flush(timeout=20)  # nothing pending: delivered or dead
    assert receiver.posts(unknown[0]) == BOUND  # bounded
    assert receiver.posts(unknown[1]) == receiver.posts(unknown[2]) == 0  # not sent at all
    assert [receiver.posts(e) for e in known] == [1, 1]  # the other call flowed

    dead = delivery.outbox.dead_letters()
    assert [d.event_id for d in dead] == [e.id for e in unknown]
    assert [(d.status, d.error_code) for d in dead] == [(404, "call_not_found")] * 3
    assert [d.scope for d in dead] == ["event", "call", "call"]
    assert dead[0].attempts == BOUND
    assert dead[0].body == unknown[0].model_dump_json()  # kept whole, to inspect or requeue
    assert delivery.stats.dead_lettered == 3

    (line,) = loud(caplog)
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert "call_x" in message and unknown[0].id in message
    assert "404" in message and "call_not_found" in message
    assert line.__dict__["error_code"] == "call_not_found" and line.__dict__["status"] == 404
    assert BODY_SECRET not in caplog.text
    assert all(BODY_SECRET not in (d.last_error or "") for d in dead)

    later = make_event("call_x", await delivery.next_sequence("call_x"))  # the call goes on
    await delivery.add(later)
    assert await delivery.flush(timeout=10)
    assert receiver.posts(later) == 0
    assert [d.event_id for d in delivery.outbox.dead_letters("call_x")][-1] == later.id
    assert len(loud(caplog)) == 1  # still the one line


async def test_two_senders_on_one_outbox_count_refusals_once(
    receiver: FakeReceiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    """Job processes share the outbox: the claim keeps the event with one sender per try."""
    receiver.answer = call_not_found
    one = start(deliveries, settings, outbox=Outbox(settings.outbox_path))
    two = start(deliveries, settings, outbox=Outbox(settings.outbox_path))
    (event,) = await add(one, "call_z", 1)
    two.notify()
    assert await one.flush(timeout=20) and await two.flush(timeout=20)
    assert receiver.posts(event) == BOUND
    assert one.outbox.dead_letter_count() == 1
    for delivery in (one, two):
        await delivery.aclose(timeout=0)
        delivery.outbox.close()


# ---- 422: one event refused ---------------------------------------------------------------------


async def test_a_refused_event_is_dead_lettered_alone_and_the_call_goes_on(
    receiver: FakeReceiver,
    settings: DeliverySettings,
    deliveries: list[EventDelivery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="convoi.reporting.delivery")

    def refuse_seq_2(event: CallEvent, tries: int) -> tuple[int, dict[str, object]]:
        if event.sequence == 2:
            return 422, {"error": "invalid_event", "detail": BODY_SECRET}
        return 201, {"status": "stored"}

    receiver.answer = refuse_seq_2
    delivery = start(deliveries, settings)
    events = await add(delivery, "call_r", 3)
    assert await delivery.flush(timeout=20)
    stored = [event_id for event_id, status in receiver.log if status == 201]
    assert stored == [events[0].id, events[2].id]  # in order, seq 3 after seq 2 was settled
    assert receiver.posts(events[1]) == BOUND
    (dead,) = delivery.outbox.dead_letters()
    assert (dead.event_id, dead.status, dead.error_code, dead.scope) == (
        events[1].id,
        422,
        "invalid_event",
        "event",
    )
    (line,) = loud(caplog)
    assert line.levelno == logging.ERROR and events[1].id in line.getMessage()
    assert BODY_SECRET not in caplog.text
    later = make_event("call_r", await delivery.next_sequence("call_r"))
    await delivery.add(later)  # the call is not refused: its next events are sent
    assert await delivery.flush(timeout=10)
    assert receiver.posts(later) == 1


# ---- retryable and misconfigured answers are never dead-lettered -------------------------------


async def test_server_errors_are_retried_past_the_bound_and_delivered(
    receiver: FakeReceiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    tries = 3 * BOUND
    receiver.answer = lambda e, n: (503, {"error": "down"}) if n < tries else (201, {})
    delivery = start(deliveries, settings)
    (event,) = await add(delivery, "call_s", 1)
    assert await delivery.flush(timeout=30)
    assert receiver.posts(event) == tries + 1
    assert delivery.outbox.dead_letter_count() == 0
    record = delivery.outbox.get(event.id)
    assert record is not None and record.delivered_at is not None and record.refusals == 0


async def test_a_bad_secret_is_retried_not_dead_lettered(
    receiver: FakeReceiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    receiver.answer = lambda e, n: (401, {"error": "invalid_signature"})
    delivery = start(deliveries, settings)
    (event,) = await add(delivery, "call_t", 1)
    bound = 2 * BOUND
    await wait_until(lambda: receiver.posts(event) > bound, "retries past the dead-letter bound")
    assert delivery.outbox.dead_letter_count() == 0
    assert delivery.outbox.pending_count() == 1
    record = delivery.outbox.get(event.id)
    assert record is not None and record.last_error == "HTTP 401 invalid_signature"


async def test_a_transient_404_then_known_call_is_delivered(
    receiver: FakeReceiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    limit = BOUND - 1
    receiver.answer = lambda e, n: call_not_found(e, n) if len(receiver.log) < limit else (201, {})
    delivery = start(deliveries, settings)  # the call becomes known after `limit` refusals
    events = await add(delivery, "call_u", 2)
    assert await delivery.flush(timeout=20)
    assert [receiver.posts(e) for e in events] == [limit + 1, 1]
    assert delivery.outbox.dead_letter_count() == 0


# ---- the outbox's dead letters: requeue, old files, the command line ----------------------------


def test_requeue_puts_a_refused_call_back(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        events = [make_event("call_v", n) for n in (1, 2)]
        for event in events:
            outbox.add(event)
        moved = outbox.dead_letter(events[0].id, status=404, error_code="x", call_unknown=True)
        assert moved == 2 and outbox.pending_count() == 0
        outbox.add(make_event("call_v", 3))  # refused call: straight to the dead letters
        assert (outbox.pending_count(), outbox.dead_letter_count()) == (0, 3)
        assert outbox.requeue(call_id="call_v") == 3
        assert (outbox.pending_count(), outbox.dead_letter_count()) == (3, 0)
        assert [p.sequence for p in outbox.due(now=0.0)] == [1, 2, 3]
        outbox.add(make_event("call_v", 4))  # no longer refused
        assert outbox.pending_count() == 4
        assert outbox.dead_letter("evt_unknown", status=404, error_code=None) == 0


def test_an_outbox_file_from_before_dead_letters_opens_and_works(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE outbox (id TEXT PRIMARY KEY, call_id TEXT NOT NULL, sequence INTEGER NOT NULL,
            type TEXT NOT NULL, body TEXT NOT NULL, added_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT, delivered_at REAL);
        CREATE TABLE call_sequences (call_id TEXT PRIMARY KEY, last INTEGER NOT NULL);
        """
    )
    event = make_event("call_w", 1)
    db.execute(
        "INSERT INTO outbox (id, call_id, sequence, type, body, added_at) VALUES (?,?,?,?,?,0)",
        (event.id, event.call_id, event.sequence, event.type, event.model_dump_json()),
    )
    db.commit()
    db.close()
    with Outbox(path) as outbox:
        (pending,) = outbox.due(now=0.0)
        assert pending.event_id == event.id and pending.refusals == 0
        assert outbox.mark_failed(event.id, "HTTP 404", 0.0, refused=True) == (1, 1)


def test_command_line_lists_and_requeues_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "o.sqlite3"
    event = make_event("call_cli", 1, metadata={"note": BODY_SECRET})
    with Outbox(path) as outbox:
        outbox.add(event)
        outbox.dead_letter(event.id, status=404, error_code="call_not_found", call_unknown=True)
    assert worker_cli(["outbox", "--outbox", str(path), "dead-letters", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert (row["event_id"], row["call_id"], row["status"], row["error_code"]) == (
        event.id,
        "call_cli",
        404,
        "call_not_found",
    )
    assert BODY_SECRET not in line
    assert worker_cli(["outbox", "--outbox", str(path), "requeue"]) == 2
    assert worker_cli(["outbox", "--outbox", str(path), "requeue", "--call", "call_cli"]) == 0
    assert worker_cli(["outbox", "--outbox", str(path), "status"]) == 0
    assert "1 pending, 0 dead" in capsys.readouterr().out
    assert worker_cli(["outbox", "--outbox", str(tmp_path / "none"), "status"]) == 2


def test_the_control_plane_refuses_an_unknown_calls_event_as_delivery_expects(
    tmp_path: Path,
) -> None:
    """The contract with ``convoi-api``: an event for a call it never created is a 404 whose
    error code delivery reads as "call unknown" (so it is dead-lettered, not retried forever)."""
    app = create_app(make_settings(tmp_path), FakeLiveKitGateway())
    with TestClient(app) as client:
        body, headers = signed_event(API_SECRET, "call_neverCreated0001", 1, "active")
        response = client.post(
            "/internal/v1/calls/call_neverCreated0001/events", content=body, headers=headers
        )
    assert classify(response.status_code) is Verdict.CALL_UNKNOWN
    assert error_code(response.content) == "call_not_found"
