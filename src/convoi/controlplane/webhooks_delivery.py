"""The webhook deliverer: a background task in the API process that empties the outbox.

:class:`WebhookDeliverer` (started and stopped with the app, like the lease keeper) claims due
deliveries (:func:`~convoi.controlplane.webhooks_outbox.claim_due`) up to
``CONVOI_WEBHOOK_CONCURRENCY`` in flight, POSTs each with httpx — body exactly as stored, headers
from :func:`convoi.reporting.signing.signature_headers` keyed with the endpoint's secret
(``Convoi-Timestamp``, ``Convoi-Signature: v1=…``, ``Convoi-Event-Id``) — and records the outcome.
A 2xx answer is delivered; anything else (another status, a timeout after
``CONVOI_WEBHOOK_TIMEOUT_SECONDS``, a refused connection) is retried with exponential backoff for
``CONVOI_WEBHOOK_RETRY_HOURS``, then the delivery is ``failed``. Redirects are not followed.

It never touches the API's request path: its own database pool (two connections), its own HTTP
client, bounded concurrency; a slow or dead endpoint holds at most half of the in-flight slots.
Several API processes may run deliverers on one database: claims are leases (see the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.models import utcnow
from convoi.controlplane.log import logger
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.controlplane.webhooks_outbox import (
    Attempt,
    Claimed,
    RetryPolicy,
    claim_due,
    record_attempt,
)
from convoi.controlplane.webhooks_targets import refused_target
from convoi.reporting.signing import signature_headers

__all__ = ["USER_AGENT", "WebhookDeliverer", "policy_for"]

USER_AGENT = "Convoi-Webhooks/1.0"


def policy_for(settings: ControlPlaneSettings) -> RetryPolicy:
    """The retry policy the settings describe (the claim lease outlives an attempt)."""
    return RetryPolicy(
        base_seconds=settings.webhook_backoff_base_seconds,
        max_seconds=settings.webhook_backoff_max_seconds,
        window=timedelta(hours=settings.webhook_retry_hours),
        lease=timedelta(seconds=settings.webhook_timeout_seconds + 30),
    )


class WebhookDeliverer:
    """Delivers the outbox of one database (see the module doc)."""

    def __init__(
        self,
        database: Database,
        settings: ControlPlaneSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._policy = policy_for(settings)
        self._timeout = settings.webhook_timeout_seconds
        self._concurrency = settings.webhook_concurrency
        self._poll = settings.webhook_poll_seconds
        self._transport = transport
        self._clock = clock
        self._public_only = settings.environment != "local"  # see webhooks_targets
        self.owner = f"dlv_{secrets.token_hex(8)}"
        """This deliverer's claim token."""
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    def start(self) -> None:
        """Start delivering (in the running event loop)."""
        if self._task is None:
            self._wake, self._stopping = asyncio.Event(), False
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                transport=self._transport,
                headers={"User-Agent": USER_AGENT},
            )
            self._task = asyncio.create_task(self._run(), name="convoi-webhooks")

    async def stop(self) -> None:
        """Stop: cancel attempts in flight (their claims lapse; they are retried later).

        The loop also stops on a flag: Python 3.11's ``asyncio.wait_for`` can swallow a
        cancellation that arrives as its inner wait completes (an attempt cancelled here wakes the
        loop at that very moment), and the loop would then run on and never be awaited."""
        self._stopping = True
        self._wake.set()
        tasks = [t for t in (self._task, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            free = self._concurrency - len(self._in_flight)
            if free > 0:
                try:
                    claimed = await asyncio.to_thread(self._claim, free)
                except Exception:
                    logger.exception("webhook outbox claim failed; trying again")
                    claimed = []
                for delivery in claimed if not self._stopping else []:
                    task = asyncio.create_task(self._deliver(delivery), name="convoi-webhook")
                    self._in_flight.add(task)
                    task.add_done_callback(self._done)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)  # the poll period
            self._wake.clear()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a slot is free

    def _claim(self, limit: int) -> list[Claimed]:
        with self._database.session() as session:
            return claim_due(
                session,
                self.owner,
                limit,
                self._clock(),
                self._policy,
                per_endpoint=max(1, self._concurrency // 2),
            )

    async def attempt(self, delivery: Claimed) -> Attempt:
        """POST one delivery, signed; never raises for the endpoint's failures."""
        assert self._client is not None, "start() first"
        if self._public_only and (refused := await refused_target(delivery.url)) is not None:
            return Attempt(False, None, refused)
        headers = signature_headers(delivery.secret, delivery.payload, delivery.event_id)
        headers["Content-Type"] = "application/json"
        try:
            response = await self._client.post(
                delivery.url, content=delivery.payload.encode("utf-8"), headers=headers
            )
        except httpx.TimeoutException:
            return Attempt(False, None, f"timed out after {self._timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status_code < 300:
            return Attempt(True, response.status_code)
        return Attempt(False, response.status_code, f"HTTP {response.status_code}")

    async def _deliver(self, delivery: Claimed) -> None:
        outcome = await self.attempt(delivery)
        try:
            status = await asyncio.to_thread(self._record, delivery.id, outcome)
        except Exception:
            logger.exception("could not record a webhook attempt; its claim will lapse")
            return
        if status == "failed":
            logger.warning(
                "webhook delivery given up: %s",
                outcome.error,
                extra={"event_id": delivery.event_id},
            )

    def _record(self, delivery_id: int, outcome: Attempt) -> str | None:
        with self._database.session() as session:
            return record_attempt(
                session, delivery_id, self.owner, outcome, self._clock(), self._policy
            )
