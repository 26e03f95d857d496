"""Event delivery against the real receiver app on a free port: outages, lost acks, restarts."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from convoi.receiver import ReceiverStore
from convoi.receiver.app import create_app
from convoi.reporting.delivery import DeliverySettings, EventDelivery, deliver_pending
from convoi.reporting.events import CallEvent
from convoi.reporting.outbox import Outbox
from convoi.reporting.signing import EVENT_ID_HEADER, SIGNATURE_HEADER
from tests.helpers import free_port, make_event, wait_until

SECRET = "delivery-test-secret"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Receiver:
    """The reference receiver app on a fixed port, startable and stoppable, logging requests."""

    def __init__(self, store: ReceiverStore, port: int) -> None:
        self.store = store
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.lose_ack_for: set[str] = set()
        """Event ids to store and then answer 500 once (a lost acknowledgement)."""
        self.fail_before_storing: Callable[[int], bool] = lambda n: False
        self.hang = asyncio.Event()
        """While set, POSTs hang until ``unhang`` is set, then answer 503."""
        self.unhang = asyncio.Event()
        self.log: list[tuple[str | None, int, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        event_id = request.headers.get(EVENT_ID_HEADER)
        if request.method == "POST" and self.hang.is_set():
            self.log.append((event_id, 0, dict(request.headers)))
            await self.unhang.wait()
            return web.json_response({"error": "hung"}, status=503)
        if request.method == "POST" and self.fail_before_storing(len(self.log)):
            response: web.StreamResponse = web.json_response({"error": "flaky"}, status=503)
        else:
            response = await handler(request)
            if request.method == "POST" and event_id in self.lose_ack_for:
                self.lose_ack_for.discard(event_id)
                response = web.json_response({"error": "ack lost"}, status=500)
        if request.method == "POST":
            self.log.append((event_id, response.status, dict(request.headers)))
        return response

    async def start(self) -> None:
        app = create_app(self.store, [SECRET])
        app.middlewares.append(self._middleware)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stored_ids(self, call_id: str) -> list[str]:
        return [e.id for e in self.store.events(call_id)]


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    receiver = Receiver(ReceiverStore(tmp_path / "receiver.sqlite3"), free_port())
    yield receiver
    receiver.unhang.set()
    await receiver.stop()
    receiver.store.close()


@pytest.fixture
def settings(tmp_path: Path, receiver: Receiver) -> DeliverySettings:
    return DeliverySettings(
        api_url=receiver.url,
        events_secret=SECRET,
        outbox_path=tmp_path / "outbox" / "outbox.sqlite3",
        backoff_initial=0.02,
        backoff_max=0.2,
        request_timeout=2.0,
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
    delivery = EventDelivery(settings, **kw)  # type: ignore[arg-type]
    delivery.start()
    deliveries.append(delivery)
    return delivery


async def add_events(delivery: EventDelivery, call_id: str, count: int) -> list[CallEvent]:
    events = []
    for _ in range(count):
        event = make_event(call_id, await delivery.next_sequence(call_id))
        await delivery.add(event)
        events.append(event)
    return events


async def test_events_arrive_signed_and_are_stored(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    await receiver.start()
    delivery = start(deliveries, settings)
    events = await add_events(delivery, "call_a", 3)
    assert await delivery.flush(timeout=10)
    assert receiver.stored_ids("call_a") == [e.id for e in events]
    for (event_id, status, headers), event in zip(receiver.log, events, strict=True):
        assert (event_id, status) == (event.id, 201)
        assert headers["Content-Type"] == "application/json"
        assert headers[SIGNATURE_HEADER].startswith("v1=")
    stored = receiver.store.event(events[0].id)
    assert stored is not None and stored.body == events[0].model_dump_json()
    assert delivery.stats.attempts == 3 and delivery.stats.failed == 0


async def test_outage_then_recovery_delivers_everything_exactly_once_in_order(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    delivery = start(deliveries, settings)  # the receiver is not listening yet
    a = await add_events(delivery, "call_a", 3)
    b = await add_events(delivery, "call_b", 2)

    def head_retried() -> bool:
        heads = [delivery.outbox.get(a[0].id), delivery.outbox.get(b[0].id)]
        return all(h is not None and h.attempts >= 3 for h in heads)

    await wait_until(head_retried, "the first event of each call to be retried 3 times")
    assert delivery.outbox.pending_count() == 5
    for later in (*a[1:], *b[1:]):  # nothing is sent past an unacknowledged earlier event
        record = delivery.outbox.get(later.id)
        assert record is not None and record.attempts == 0
    head = delivery.outbox.get(a[0].id)
    assert head is not None and head.last_error and "Connect" in head.last_error

    await receiver.start()
    assert await delivery.flush(timeout=10)
    assert receiver.stored_ids("call_a") == [e.id for e in a]
    assert receiver.stored_ids("call_b") == [e.id for e in b]
    assert all(e.duplicates == 0 for e in receiver.store.events("call_a"))
    assert [status for _, status, _ in receiver.log] == [201] * 5


async def test_lost_ack_is_redelivered_and_recorded_as_duplicate(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    await receiver.start()
    delivery = start(deliveries, settings)
    event = make_event("call_c", 1, status="completed", ended_reason="agent_hangup")
    receiver.lose_ack_for.add(event.id)
    await delivery.add(event)
    assert await delivery.flush(timeout=10)
    assert [(eid, status) for eid, status, _ in receiver.log] == [(event.id, 500), (event.id, 200)]
    stored = receiver.store.event(event.id)
    assert stored is not None and stored.duplicates == 1
    state = receiver.store.call("call_c")
    assert state is not None and state.events_received == 1  # applied once
    record = delivery.outbox.get(event.id)
    assert record is not None and record.attempts == 2 and record.delivered_at is not None


async def test_worker_restart_resends_the_outbox(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    first = start(deliveries, settings)
    events = [*await add_events(first, "call_d", 3), *await add_events(first, "call_e", 2)]
    await wait_until(lambda: first.stats.failed >= 4, "failed attempts while the receiver is down")
    await first.aclose(timeout=0.1)
    with Outbox(settings.outbox_path) as outbox:
        assert outbox.pending_count() == 5

    await receiver.start()
    second = start(deliveries, settings)  # a new process on the same outbox file
    assert await second.flush(timeout=10)
    assert receiver.stored_ids("call_d") == [e.id for e in events[:3]]
    assert receiver.stored_ids("call_e") == [e.id for e in events[3:]]
    assert receiver.store.event_count() == 5


async def test_a_crashed_senders_lease_lapses(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    await receiver.start()
    with Outbox(settings.outbox_path) as outbox:
        event = make_event("call_f", 1)
        outbox.add(event)
        assert len(outbox.claim(now=time.time(), limit=10, lease=0.5)) == 1  # then "crashes"
    delivery = start(deliveries, settings, lease=5.0, poll_interval=0.1)
    assert await delivery.flush(timeout=10)
    assert receiver.stored_ids("call_f") == [event.id]


async def test_per_call_order_holds_under_flaky_responses(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    receiver.fail_before_storing = lambda n: n % 3 == 1
    await receiver.start()
    delivery = start(deliveries, settings)
    calls = {f"call_{i}": await add_events(delivery, f"call_{i}", 6) for i in "ghi"}
    assert await delivery.flush(timeout=20)
    first_stored: dict[str, list[int]] = {}
    by_id = {e.id: e for events in calls.values() for e in events}
    for event_id, status, _ in receiver.log:
        if status == 201:
            event = by_id[event_id]
            first_stored.setdefault(event.call_id, []).append(event.sequence)
    assert first_stored == {call_id: [1, 2, 3, 4, 5, 6] for call_id in calls}
    assert any(status == 503 for _, status, _ in receiver.log)


async def test_late_older_sequence_does_not_overwrite_newer_state(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    await receiver.start()
    delivery = start(deliveries, settings)
    ended = make_event(
        "call_j", 2, type="call.ended", status="completed", ended_reason="customer_hangup"
    )
    await delivery.add(ended)
    assert await delivery.flush(timeout=10)
    await delivery.add(make_event("call_j", 1, status="active"))  # added (and sent) late
    assert await delivery.flush(timeout=10)
    state = receiver.store.call("call_j")
    assert state is not None
    assert (state.status, state.sequence, state.events_received) == ("completed", 2, 2)


async def test_bad_signature_is_401_nothing_stored_logged_once_without_secrets(
    receiver: Receiver,
    settings: DeliverySettings,
    deliveries: list[EventDelivery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="convoi.reporting.delivery")
    await receiver.start()
    wrong = settings.model_copy(update={"events_secret": SecretStr("nope-x")})
    delivery = start(deliveries, wrong)
    event = make_event("call_k", 1)
    await delivery.add(event)
    await wait_until(lambda: len(receiver.log) >= 3, "three rejected attempts")
    assert {status for _, status, _ in receiver.log} == {401}
    assert receiver.store.event_count() == 0
    assert delivery.outbox.pending_count() == 1  # never dropped
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and event.id in errors[0].getMessage()
    assert "nope-x" not in caplog.text and SECRET not in caplog.text


async def test_deliver_pending_one_shot(receiver: Receiver, settings: DeliverySettings) -> None:
    with Outbox(settings.outbox_path) as outbox:
        events = [make_event("call_l", outbox.next_sequence("call_l")) for _ in range(4)]
        for event in events:
            outbox.add(event)
    assert await deliver_pending(settings, timeout=0.3) == 4  # receiver down: all remain
    await receiver.start()
    assert await deliver_pending(settings, timeout=10) == 0
    assert receiver.stored_ids("call_l") == [e.id for e in events]


@pytest.mark.server  # the receiver as a subprocess
async def test_command_line_receiver_and_flush(tmp_path: Path) -> None:
    env = {**os.environ, "TEST_EVENTS_SECRET": SECRET}
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convoi.receiver", "--port", "0", "--db", str(tmp_path / "r.db"),
        "--secret-env", "TEST_EVENTS_SECRET", env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert receiver.stdout is not None
        line = (await asyncio.wait_for(receiver.stdout.readline(), 30)).decode().strip()
        assert line.startswith("receiver listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        outbox_path = tmp_path / "outbox.sqlite3"
        with Outbox(outbox_path) as outbox:
            for sequence in (1, 2):
                outbox.add(make_event("call_m", sequence))
        flush = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "convoi.reporting.delivery", "--flush", "--timeout", "20",
            "--outbox", str(outbox_path),
            env={**env, "CONVOI_API_URL": url, "CONVOI_EVENTS_SECRET": SECRET},
        )  # fmt: skip
        assert await asyncio.wait_for(flush.wait(), 60) == 0
        store = ReceiverStore(tmp_path / "r.db")
        assert [e.sequence for e in store.events("call_m")] == [1, 2]
        store.close()
    finally:
        receiver.terminate()
        await receiver.wait()


async def test_closing_during_a_hanging_request_gives_the_event_back(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    receiver.hang.set()
    await receiver.start()
    first = start(deliveries, settings)
    (event,) = await add_events(first, "call_n", 1)
    await wait_until(lambda: len(receiver.log) == 1, "the request to reach the receiver")
    await first.aclose(timeout=0.2)  # cancels the in-flight POST
    with Outbox(settings.outbox_path) as outbox:
        record = outbox.get(event.id)
        assert record is not None and record.delivered_at is None
        assert record.next_attempt_at <= time.time()  # released, not leased for a minute
    receiver.hang.clear()
    receiver.unhang.set()
    second = start(deliveries, settings)
    assert await second.flush(timeout=10)
    assert receiver.stored_ids("call_n") == [event.id]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name, value in {
        "CONVOI_API_URL": "http://cp.internal:8000/",
        "CONVOI_EVENTS_SECRET": "env-secret-value",
        "CONVOI_OUTBOX_PATH": "/var/lib/convoi/outbox.sqlite3",
        "CONVOI_PROGRESS_INTERVAL": "2.5",
        "CONVOI_DELIVERY_BACKOFF_INITIAL": "0.1",
        "CONVOI_DELIVERY_BACKOFF_MAX": "5",
        "CONVOI_DELIVERY_TIMEOUT": "3",
    }.items():
        monkeypatch.setenv(name, value)
    settings = DeliverySettings()
    assert settings.configured
    assert settings.api_url == "http://cp.internal:8000/"
    assert settings.outbox_path == Path("/var/lib/convoi/outbox.sqlite3")
    assert settings.progress_interval == 2.5
    assert (settings.backoff_initial, settings.backoff_max, settings.request_timeout) == (
        0.1,
        5.0,
        3.0,
    )
    assert "env-secret-value" not in repr(settings)
    monkeypatch.setenv("CONVOI_DELIVERY_BACKOFF_MAX", "0.05")
    with pytest.raises(ValueError):
        DeliverySettings()


def test_defaults_and_unconfigured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CONVOI_API_URL", "CONVOI_EVENTS_SECRET", "CONVOI_OUTBOX_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings = DeliverySettings()
    assert not settings.configured
    assert settings.outbox_path == Path(".convoi/outbox.sqlite3")
    assert settings.progress_interval == 5.0
    assert (settings.backoff_initial, settings.backoff_max, settings.request_timeout) == (
        0.5,
        30.0,
        10.0,
    )
    with Outbox(tmp_path / "o.sqlite3") as outbox, pytest.raises(ValueError, match="API_URL"):
        EventDelivery(settings, outbox)


async def test_two_senders_sharing_one_outbox_do_not_double_send(
    receiver: Receiver, settings: DeliverySettings, deliveries: list[EventDelivery]
) -> None:
    """Job processes share the outbox file: claims keep each event with one sender at a time."""
    receiver.fail_before_storing = lambda n: n % 4 == 3
    await receiver.start()
    one = start(deliveries, settings, outbox=Outbox(settings.outbox_path), batch_size=3)
    two = start(deliveries, settings, outbox=Outbox(settings.outbox_path), batch_size=3)
    events = {}
    for i in range(4):
        call_id = f"call_s{i}"
        events[call_id] = await add_events(one if i % 2 else two, call_id, 8)
        two.notify()
        one.notify()
    assert await one.flush(timeout=20) and await two.flush(timeout=20)
    assert one.stats.delivered > 0 and two.stats.delivered > 0
    for delivery in (one, two):
        await delivery.aclose(timeout=0)
        delivery.outbox.close()
    for call_id, sent in events.items():
        assert receiver.stored_ids(call_id) == [e.id for e in sent]
        assert all(e.duplicates == 0 for e in receiver.store.events(call_id))
    stored_order = [eid for eid, status, _ in receiver.log if status == 201]
    by_id = {e.id: e for sent in events.values() for e in sent}
    for call_id in events:
        sequences = [by_id[eid].sequence for eid in stored_order if by_id[eid].call_id == call_id]
        assert sequences == list(range(1, 9))
