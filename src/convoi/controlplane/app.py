"""``create_app(settings, gateway=None)``: the ``convoi-api`` FastAPI application.

Implements the seed's Calls API (``POST /api/v1/public/calls``, ``GET /api/v1/public/calls/{id}``)
and receives the worker's signed events (``POST /internal/v1/calls/{call_id}/events``). Decisions
where the seed is silent or contradicts itself (also in the OpenAPI description below):

- ``room_id`` on phone calls: the seed's prose says null, its workforce example shows a value. We
  follow the example: the worker dials the customer into a LiveKit room, so ``room_id`` names it
  for every call. ``livekit`` is null for phone calls (no participant token is minted).
- ``customer`` in responses echoes ``number`` only, as the seed's example; ``name`` and
  ``metadata`` reach the agent (CallSpec) but are not repeated in responses.
- ``cost.amount`` is a JSON number rounded to 6 decimals; the database keeps the exact decimal.
- Idempotency-Key reused with a different body: 422 ``idempotency_key_reused`` (409
  ``idempotency_key_in_use`` only while the first request is still running).
- ``pk_live_`` keys: 403 for workforce calls (seed) and for any phone call (toll fraud); they may
  read their account's web calls only.
- ``ended_reason``, ``fault``, ``detail`` (and for phone calls ``transfer``, ``voicemail``) in GET
  responses are extensions; GET never returns the participant token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from convoi.controlplane import idempotency, keys
from convoi.controlplane.api.errors import install_error_handlers
from convoi.controlplane.api.guard import RequestGuard
from convoi.controlplane.api.main import api_router
from convoi.controlplane.api.state import ControlPlaneState, rate_limiter_for
from convoi.controlplane.db.engine import Database, PoolLimits
from convoi.controlplane.db.migrate import upgrade_to_head
from convoi.controlplane.definitions_dispatch import seed_if_new
from convoi.controlplane.leases import LeaseKeeper, Leases
from convoi.controlplane.livekit import LiveKitApiGateway, LiveKitGateway
from convoi.controlplane.log import logger
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.controlplane.web import install_dashboard_page, install_demo_page
from convoi.controlplane.webhooks_delivery import WebhookDeliverer
from convoi.definitions.loader import load_definitions
from convoi.definitions.models import Definitions

__all__ = ["DESCRIPTION", "create_app", "database_for", "startup"]

DESCRIPTION = """\
Start a web call or an outbound phone call from a single endpoint, set type to "web" or
"outbound_phone", and poll `GET /api/v1/public/calls/{id}` for live status, duration and cost.

**Authentication**: `Authorization: Bearer sk_live_…` (secret key: everything) or
`pk_live_…` (publishable key: web calls only; workforce and phone calls answer 403).

**Web calls** return `livekit.url` and `livekit.token`: pass them to the LiveKit client SDK in
your browser to join the call; the agent joins as soon as the participant connects.
Workforce ids (`sqd_…`) are for `outbound_phone` only (422 on web calls).

**Phone calls** return `livekit: null`. `room_id` is set for every call type: the seed's prose
says it is null for phone calls but its workforce example shows a value; the customer is dialled
into a LiveKit room, and `room_id` names it. `customer` echoes the `number` only (as the seed's
example); name and metadata go to the agent.

**Idempotency**: send `Idempotency-Key` (any UUID) to make the POST safe to retry for 24 hours;
identical retries replay the original response (header `Idempotent-Replayed: true`), a different
body with the same key answers 422 `idempotency_key_reused`, a retry while the first request is
still running 409 `idempotency_key_in_use`. Failed requests are not stored.

**Errors**: every error has the body `{"error": {"code", "message", "field"}}`.

**Extensions**: `ended_reason`, `fault` and `detail` in GET responses, and for phone calls
`transfer` (destination, cold/warm, succeeded) and `voicemail` (answering-machine verdict,
detection seconds, action); `cost.amount` is rounded to 6 decimals.

**Listing and ending** (secret keys list; ending follows GET's visibility):
`GET /api/v1/public/calls` pages newest first with an opaque `next_cursor`;
`POST /api/v1/public/calls/{id}/end` ends a live call after the agent's sentence (202,
`completed` / `api_hangup`), cancels one not yet answered (`canceled` / `api_hangup`), and answers
409 `call_already_ended` for a call that has ended.

**Webhooks** (secret keys only): `POST /api/v1/public/webhooks` registers a URL and returns its
signing secret once. `call.status` (each transition) and `call.ended` (final status, cost with
its breakdown, transcript, handoffs, metadata) are POSTed from a durable outbox, in order per
call, signed like the worker's events (`Convoi-Timestamp`, `Convoi-Signature: v1=<hex
HMAC-SHA256 of "timestamp.body">`, `Convoi-Event-Id` to de-duplicate), retried with exponential
backoff for 24 hours. `GET /api/v1/public/calls/{id}/events` shows each delivery.
"""


def startup(state: ControlPlaneState) -> None:
    """Migrate (if configured), store the local dev keys, purge expired idempotency keys."""
    settings = state.settings
    if placeholders := settings.placeholder_secrets():
        logger.warning("placeholder secrets in use (local only): %s", ", ".join(placeholders))
    if settings.auto_migrate:
        revision = upgrade_to_head(state.database)
        logger.info("database at revision %s", revision)
    with state.database.session() as session:
        for account_id, key in settings.dev_keys():
            keys.store_key(session, account_id, key)
        idempotency.purge_expired(session)
    if settings.seed_definitions:  # the dev accounts call the shipped agents
        for account_id in dict.fromkeys(account for account, _key in settings.dev_keys()):
            seed_if_new(state.database, account_id, state.definitions)


def database_for(settings: ControlPlaneSettings) -> Database:
    """The database of ``settings``, with its pool limits."""
    pool = PoolLimits(
        settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout_seconds
    )
    return Database(settings.database_url, pool=pool)


def create_app(
    settings: ControlPlaneSettings | None = None,
    gateway: LiveKitGateway | None = None,
    *,
    definitions: Definitions | None = None,
    database: Database | None = None,
) -> FastAPI:
    """The app. Omitted pieces are built from ``settings`` (itself read from the environment)."""
    settings = settings or ControlPlaneSettings()
    owned_gateway = gateway is None
    owned_database = database is None
    database = database or database_for(settings)
    events_database = database.with_pool(
        PoolLimits(settings.db_events_pool_size, 0, settings.db_pool_timeout_seconds)
    )
    state = ControlPlaneState(
        settings=settings,
        database=database,
        events_database=events_database,
        gateway=gateway
        or LiveKitApiGateway(
            settings.livekit_url,
            settings.livekit_api_key,
            settings.livekit_api_secret.get_secret_value(),
        ),
        definitions=definitions or load_definitions(settings.config_dir).definitions,
        rate_limiter=rate_limiter_for(settings),
    )

    leases = LeaseKeeper(
        state.database,
        state.gateway,
        Leases(
            active=settings.call_lease_seconds,
            starting=settings.call_start_lease_seconds,
            resume_after=settings.call_resume_after_seconds or None,
            max_resumes=settings.max_resumes,
        ),
        agent_name=settings.agent_name,
    )
    webhooks_database = database.with_pool(PoolLimits(2, 0, settings.db_pool_timeout_seconds))
    deliverer = WebhookDeliverer(webhooks_database, settings)  # its own pool: never the API's

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        await run_in_threadpool(startup, state)
        leases.start()
        deliverer.start()
        try:
            yield
        finally:
            await deliverer.stop()
            await leases.stop()
            if webhooks_database is not database:
                webhooks_database.dispose()
            await state.rate_limiter.aclose()
            if owned_gateway:
                await run_in_threadpool(state.gateway.close)
            if events_database is not database:
                events_database.dispose()
            if owned_database:
                database.dispose()

    app = FastAPI(
        title="Convoi Calls API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "calls", "description": "Create a Call, read it back, list, end."},
            {"name": "webhooks", "description": "Call events POSTed to your server, signed."},
        ],
    )
    app.state.convoi = state
    install_error_handlers(app)
    app.add_middleware(RequestGuard, state=state)  # key, limits, body size: before the body
    app.include_router(api_router)
    install_demo_page(app)  # GET /demo: the web-call demo page (scripts/build-web)
    install_dashboard_page(app)  # GET /dashboard: the calls dashboard (same bundle)
    return app
