"""Delivery of call events from the outbox to the control plane (docs/architecture.md §8).

``POST {CONVOI_API_URL}/internal/v1/calls/{call_id}/events`` with the outbox body (exact bytes),
``Content-Type: application/json`` and the signature headers of :mod:`convoi.reporting.signing`.

Outcomes (the full table is in :mod:`convoi.reporting.refusals`): any 2xx, and 409 (the receiver
already has this event id: "duplicate"), mark the event delivered. 5xx, 408, 425, 429, timeouts
and connection errors are retried with exponential backoff and full jitter:
``random() * min(max, initial * 2**attempts)``, per event, with ``Retry-After`` honoured (up to the
max) on 429/503. A permanent refusal (404/410: the receiver does not know the call; 400/413/422:
it refuses this event) is retried the same way (with at least half the cap as delay), and after
:data:`DEAD_LETTER_AFTER` refusals (5) the event moves to the outbox's dead
letters, logged once (call id, event id, status, the receiver's error code; never the body). A
404/410 takes the call's other pending and later events with it; a 400/413/422 only this event, and
the call's next events go on. 401/403, 3xx and other 4xx mean the sender is misconfigured (secret,
URL): retried, never dead-lettered, logged at error level once per event. A call's events go out
in sequence order: seq 5 waits until seq 4 is acknowledged (or dead-lettered). Only the process
holding an event's claim (:meth:`Outbox.claim`) sends it, so refusals are counted once per try.

Usage in a job: ``delivery = EventDelivery(DeliverySettings()); delivery.start()``, then
``await delivery.add(event)`` (a quick local commit, then the background task sends) and
``await delivery.aclose(timeout)`` at the end. Whatever is not acknowledged stays in the outbox and
is sent by the next :class:`EventDelivery` on the same file (it starts by resending what is
pending) or by ``python -m convoi.reporting.delivery --flush``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from urllib.parse import quote

import aiohttp
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from convoi.reporting.events import CallEvent
from convoi.reporting.outbox import Outbox, PendingEvent
from convoi.reporting.refusals import Verdict, classify, error_code
from convoi.reporting.signing import signature_headers

__all__ = [
    "DEAD_LETTER_AFTER",
    "DeliverySettings",
    "DeliveryStats",
    "EventDelivery",
    "deliver_pending",
    "main",
]

logger = logging.getLogger("convoi.reporting.delivery")

DEAD_LETTER_AFTER = 5
"""Permanent refusals (404, 410, 400, 413, 422) of one event before it is dead-lettered. With the
default backoff the four waits between them (at least half of 0.5, 1, 2, 4 s) span 3.75-7.5 s
(measured: 4.7-6.1 s from the event's commit to its dead letter)."""

_ERROR_BODY_BYTES = 2048
"""How much of an error answer is read to find the receiver's error code (then dropped)."""


class DeliverySettings(BaseSettings):
    """Event delivery settings, read from the environment (and ``.env``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    api_url: str | None = Field(None, alias="CONVOI_API_URL")
    """Control plane root, e.g. ``http://127.0.0.1:8000`` (events go to ``/internal/v1/...``)."""
    events_secret: SecretStr | None = Field(None, alias="CONVOI_EVENTS_SECRET")
    """Shared HMAC secret for signing events."""
    outbox_path: Path = Field(Path(".convoi/outbox.sqlite3"), alias="CONVOI_OUTBOX_PATH")
    """SQLite outbox file (shared by all job processes of a worker machine)."""
    progress_interval: float = Field(5.0, alias="CONVOI_PROGRESS_INTERVAL", gt=0)
    """Seconds between ``call.progress`` events while a call is active."""
    backoff_initial: float = Field(0.5, alias="CONVOI_DELIVERY_BACKOFF_INITIAL", gt=0)
    """First retry delay cap in seconds (doubled per attempt, full jitter)."""
    backoff_max: float = Field(30.0, alias="CONVOI_DELIVERY_BACKOFF_MAX", gt=0)
    """Largest retry delay in seconds."""
    request_timeout: float = Field(10.0, alias="CONVOI_DELIVERY_TIMEOUT", gt=0)
    """Total timeout of one POST, in seconds."""

    @model_validator(mode="after")
    def _check_backoff(self) -> DeliverySettings:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                "CONVOI_DELIVERY_BACKOFF_MAX must be >= CONVOI_DELIVERY_BACKOFF_INITIAL"
            )
        return self

    @property
    def configured(self) -> bool:
        """Whether events can be sent (URL and secret both set)."""
        return bool(self.api_url and self.events_secret and self.events_secret.get_secret_value())


@dataclass
class DeliveryStats:
    """Counters since :meth:`EventDelivery.start`."""

    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    """Events moved to the dead letters (a refused call's other events included)."""


class EventDelivery:
    """Background sender of the outbox (one asyncio task).

    ``outbox`` defaults to ``Outbox(settings.outbox_path)`` (then closed by :meth:`aclose`).
    ``lease`` bounds how long claimed events are hidden from other processes sharing the file;
    ``poll_interval`` is how often it looks for events added by other processes; delivered events
    older than ``retention`` seconds are purged at start; an event refused for good
    ``dead_letter_after`` times goes to the dead letters; ``clock`` and ``jitter`` are injectable
    for tests.
    """

    def __init__(
        self,
        settings: DeliverySettings,
        outbox: Outbox | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        batch_size: int = 50,
        max_concurrency: int = 8,
        lease: float | None = None,
        poll_interval: float = 10.0,
        retention: float | None = 7 * 86400.0,
        dead_letter_after: int = DEAD_LETTER_AFTER,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not settings.configured:
            raise ValueError("event delivery needs CONVOI_API_URL and CONVOI_EVENTS_SECRET")
        assert settings.api_url is not None and settings.events_secret is not None
        self._settings = settings
        self._base_url = settings.api_url.rstrip("/")
        self._secret = settings.events_secret
        self._owns_outbox = outbox is None
        self.outbox = outbox if outbox is not None else Outbox(settings.outbox_path)
        self._session = session
        self._owns_session = session is None
        self._batch_size = batch_size
        self._concurrency = asyncio.Semaphore(max_concurrency)
        self._lease = lease if lease is not None else max(60.0, 3 * settings.request_timeout)
        self._poll_interval = poll_interval
        self._retention = retention
        if dead_letter_after < 1:
            raise ValueError("dead_letter_after must be at least 1")
        self._dead_letter_after = dead_letter_after
        self._clock = clock
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._pass_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing_deadline: float | None = None
        self._error_logged: set[str] = set()
        self.stats = DeliveryStats()

    def start(self) -> None:
        """Start the background task (call from the running event loop); resends what is pending."""
        if self._task is not None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="convoi-events")

    def notify(self) -> None:
        """Wake the task: an event was added to the outbox."""
        self._wake.set()

    async def add(self, event: CallEvent) -> None:
        """Commit ``event`` to the outbox (off the event loop) and wake the sender."""
        await asyncio.to_thread(self.outbox.add, event)
        self.notify()

    async def next_sequence(self, call_id: str) -> int:
        """Allocate the call's next sequence number (durable, see :meth:`Outbox.next_sequence`)."""
        return await asyncio.to_thread(self.outbox.next_sequence, call_id)

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox has nothing pending (``True``) or ``timeout`` passes (``False``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.notify()
        while True:
            pass_done = self._pass_done  # taken first: a pass ending meanwhile is not missed
            if not await asyncio.to_thread(self.outbox.pending_count):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0 or self._task is None or self._task.done():
                return False
            with contextlib.suppress(TimeoutError):  # re-check at least every 0.5 s: another
                await asyncio.wait_for(pass_done.wait(), min(remaining, 0.5))  # process may send

    async def aclose(self, timeout: float = 5.0) -> None:
        """Send what is due (retrying within ``timeout`` seconds), then stop.

        Whatever is still undelivered stays in the outbox for the next run.
        """
        task, self._task = self._task, None
        try:
            if task is not None:
                self._closing_deadline = self._clock() + timeout
                self._wake.set()
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout)
                except TimeoutError:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            if self._owns_session and self._session is not None:
                await self._session.close()
                self._session = None
            if self._owns_outbox:
                self.outbox.close()

    async def _run(self) -> None:
        if self._retention is not None:
            try:
                before = self._clock() - self._retention
                await asyncio.to_thread(self.outbox.purge_delivered, before)
            except Exception:
                logger.exception("could not purge delivered events from the outbox")
        while True:
            self._wake.clear()
            try:
                await self._drain()
                next_at = await asyncio.to_thread(self.outbox.next_attempt_at)
            except Exception:
                logger.exception("event delivery pass failed; retrying")
                next_at = self._clock() + self._settings.backoff_max
            self._pass_done.set()
            self._pass_done = asyncio.Event()
            now = self._clock()
            delay = self._poll_interval if next_at is None else max(0.0, next_at - now)
            if self._closing_deadline is not None:
                if next_at is None or next_at > self._closing_deadline:
                    return
                delay = min(delay, max(0.0, self._closing_deadline - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(delay, self._poll_interval))

    async def _claim(self, now: float) -> list[PendingEvent]:
        claim = asyncio.ensure_future(
            asyncio.to_thread(self.outbox.claim, now, self._batch_size, self._lease)
        )
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:  # closing: do not leave the events leased to nobody
            batch = await claim
            self.outbox.release([p.event_id for p in batch], now)
            raise

    async def _drain(self) -> None:
        while True:
            claimed_at = self._clock()
            batch = await self._claim(claimed_at)
            if not batch:
                return
            chains = [list(g) for _, g in groupby(batch, key=lambda p: p.call_id)]
            try:
                results = await asyncio.gather(
                    *(self._send_chain(chain, claimed_at) for chain in chains),
                    return_exceptions=True,
                )
            except asyncio.CancelledError:
                # a chain cancelled before it started never gives its events back: do it here
                # (delivered ones are untouched), or they would stay hidden for the whole lease
                self.outbox.release([p.event_id for p in batch], self._clock())
                raise
            for result in results:
                if isinstance(result, Exception):
                    logger.error("event delivery failed unexpectedly", exc_info=result)

    async def _send_chain(self, chain: list[PendingEvent], claimed_at: float) -> None:
        """Send one call's claimed events in order; stop (and give back the rest) on a failure."""
        unsettled = [p.event_id for p in chain]
        try:
            async with self._concurrency:
                for pending in chain:
                    if self._clock() + self._settings.request_timeout > claimed_at + self._lease:
                        return  # the lease would lapse mid-request: give the rest back
                    delivered = await self._send(pending)
                    unsettled.remove(pending.event_id)
                    if not delivered:
                        return
        finally:
            if unsettled:  # synchronous on purpose: must also run when cancelled
                self.outbox.release(unsettled, self._clock())

    async def _send(self, pending: PendingEvent) -> bool:
        """One POST; ``True`` when the event is settled (delivered or dead-lettered alone)."""
        status, code, retry_after, error = await self._post(pending)
        verdict = classify(status)
        if verdict is Verdict.DELIVERED:
            await asyncio.to_thread(self.outbox.mark_delivered, pending.event_id)
            self.stats.delivered += 1
            self._error_logged.discard(pending.event_id)
            return True
        cap = min(
            self._settings.backoff_max,
            self._settings.backoff_initial * 2 ** min(pending.attempts, 60),
        )
        delay = self._jitter() * cap
        if verdict.permanent:  # leave a transient refusal time to clear
            delay = cap / 2 + delay / 2
        if retry_after is not None and status in (429, 503):
            delay = max(delay, min(retry_after, self._settings.backoff_max))
        attempts, refusals = await asyncio.to_thread(
            self.outbox.mark_failed,
            pending.event_id,
            error,
            self._clock() + delay,
            refused=verdict.permanent,
        )
        self.stats.failed += 1
        if verdict.permanent and refusals >= self._dead_letter_after:
            await self._dead_letter(pending, status, code, verdict, attempts)
            return verdict is Verdict.REFUSED  # the call's next events may go on
        self._log_failure(pending, status, error, attempts, delay, verdict)
        return False

    async def _post(
        self, pending: PendingEvent
    ) -> tuple[int | None, str | None, float | None, str]:
        """POST the event: (status, receiver's error code, Retry-After, error text w/o body)."""
        assert self._session is not None
        body = pending.body.encode("utf-8")
        headers = signature_headers(
            self._secret.get_secret_value(), body, pending.event_id, now=self._clock()
        )
        headers["Content-Type"] = "application/json"
        url = f"{self._base_url}/internal/v1/calls/{quote(pending.call_id, safe='')}/events"
        self.stats.attempts += 1
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._settings.request_timeout),
            ) as response:
                status = response.status
                code = None
                if status >= 300:
                    code = error_code(await response.content.read(_ERROR_BODY_BYTES))
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return None, None, None, error
        return status, code, retry_after, f"HTTP {status}" + (f" {code}" if code else "")

    async def _dead_letter(
        self,
        pending: PendingEvent,
        status: int | None,
        code: str | None,
        verdict: Verdict,
        attempts: int,
    ) -> None:
        """Move a finally refused event (and, for an unknown call, its call's events) aside."""
        call_unknown = verdict is Verdict.CALL_UNKNOWN
        moved = await asyncio.to_thread(
            self.outbox.dead_letter,
            pending.event_id,
            status=status,
            error_code=code,
            call_unknown=call_unknown,
            now=self._clock(),
        )
        self.stats.dead_lettered += moved
        self._error_logged.discard(pending.event_id)
        what = "call unknown to the receiver" if call_unknown else "event refused"
        logger.log(
            logging.WARNING if call_unknown else logging.ERROR,
            "call event %s (call %s seq %d) dead-lettered after %d attempt(s): HTTP %s %s (%s);"
            " %d event(s) of the call moved to the dead letters%s"
            " (list them: convoi-worker outbox dead-letters)",
            pending.event_id,
            pending.call_id,
            pending.sequence,
            attempts,
            status,
            code or "-",
            what,
            moved,
            ", and its later events will be too" if call_unknown else "",
            extra={
                "call_id": pending.call_id,
                "event_id": pending.event_id,
                "sequence": pending.sequence,
                "status": status,
                "error_code": code,
                "attempts": attempts,
                "dead_lettered": moved,
            },
        )

    def _log_failure(
        self,
        pending: PendingEvent,
        status: int | None,
        error: str,
        attempts: int,
        delay: float,
        verdict: Verdict,
    ) -> None:
        fields = {
            "call_id": pending.call_id,
            "event_id": pending.event_id,
            "sequence": pending.sequence,
            "status": status,
            "attempts": attempts,
        }
        if verdict.permanent:  # logged once, when it is dead-lettered
            level = logging.DEBUG
        elif verdict is Verdict.MISCONFIGURED and pending.event_id not in self._error_logged:
            self._error_logged.add(pending.event_id)
            level = logging.ERROR
        elif attempts == 1 or attempts % 10 == 0:
            level = logging.WARNING
        else:
            level = logging.DEBUG
        logger.log(
            level,
            "call event %s (call %s seq %d) not delivered (%s, attempt %d); retrying in %.2fs",
            pending.event_id,
            pending.call_id,
            pending.sequence,
            error,
            attempts,
            delay,
            extra=fields,
        )


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


async def deliver_pending(
    settings: DeliverySettings | None = None, *, outbox: Outbox | None = None, timeout: float = 60.0
) -> int:
    """Send everything pending in the outbox (retrying within ``timeout``); returns how many remain."""
    settings = settings or DeliverySettings()
    delivery = EventDelivery(settings, outbox)
    delivery.start()
    try:
        await delivery.flush(timeout)
        return await asyncio.to_thread(delivery.outbox.pending_count)
    finally:
        await delivery.aclose(timeout=0)


def main(argv: list[str] | None = None) -> int:
    """``python -m convoi.reporting.delivery --flush``: exit 0 when nothing is left pending."""
    parser = argparse.ArgumentParser(prog="python -m convoi.reporting.delivery")
    parser.add_argument("--flush", action="store_true", help="send everything pending and exit")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after SECONDS")
    parser.add_argument("--outbox", type=Path, help="outbox file (default: CONVOI_OUTBOX_PATH)")
    args = parser.parse_args(argv)
    if not args.flush:
        parser.error("nothing to do (use --flush)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = DeliverySettings()
    if args.outbox is not None:
        settings = settings.model_copy(update={"outbox_path": args.outbox})
    if not settings.configured:
        print("CONVOI_API_URL and CONVOI_EVENTS_SECRET must be set", file=sys.stderr)
        return 2
    remaining = asyncio.run(deliver_pending(settings, timeout=args.timeout))
    print(f"{remaining} event(s) still pending in {settings.outbox_path}")
    with Outbox(settings.outbox_path) as outbox:
        if dead := outbox.dead_letter_count():
            print(f"{dead} dead letter(s): convoi-worker outbox dead-letters")
    return 0 if remaining == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
