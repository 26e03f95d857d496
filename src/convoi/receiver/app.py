"""The reference receiver as an aiohttp app (a thin shell around :func:`ingest_event`).

Routes:

- ``POST /internal/v1/calls/{call_id}/events``: signed event (401 / 422 / 201 stored / 200
  duplicate, see :mod:`convoi.receiver.ingest`);
- ``GET /internal/v1/calls/{call_id}/events``: ``{"events": [...]}`` in sequence order;
- ``GET /internal/v1/calls/{call_id}``: the call's latest state (404 if unknown);
- ``GET /healthz``: ``{"status": "ok"}``.

The GET routes are unauthenticated test helpers: bind the receiver to localhost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from convoi.receiver.ingest import ingest_event
from convoi.receiver.store import ReceiverStore
from convoi.reporting.signing import DEFAULT_TOLERANCE

__all__ = ["MAX_BODY_BYTES", "SECRETS_KEY", "STORE_KEY", "create_app"]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""``call.ended`` carries the whole transcript: allow more than aiohttp's 1 MiB default."""

STORE_KEY = web.AppKey("convoi_event_store", ReceiverStore)
SECRETS_KEY: web.AppKey[Sequence[str | bytes]] = web.AppKey("convoi_event_secrets")
_TOLERANCE_KEY = web.AppKey("convoi_event_tolerance", int)


async def _post_event(request: web.Request) -> web.Response:
    body = await request.read()
    result = await asyncio.to_thread(
        ingest_event,
        request.app[STORE_KEY],
        request.app[SECRETS_KEY],
        request.headers,
        body,
        request.match_info["call_id"],
        tolerance=request.app[_TOLERANCE_KEY],
    )
    return web.json_response(result.payload, status=result.status_code)


async def _list_events(request: web.Request) -> web.Response:
    events = await asyncio.to_thread(request.app[STORE_KEY].events, request.match_info["call_id"])
    return web.json_response({"events": [e.to_json() for e in events]})


async def _get_call(request: web.Request) -> web.Response:
    state = await asyncio.to_thread(request.app[STORE_KEY].call, request.match_info["call_id"])
    if state is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response(state.to_json())


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(
    store: ReceiverStore,
    secrets: Sequence[str | bytes],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    client_max_size: int = MAX_BODY_BYTES,
) -> web.Application:
    """The receiver app storing into ``store`` and accepting events signed with any of ``secrets``."""
    if not secrets or not all(secrets):
        raise ValueError("the receiver needs at least one non-empty events secret")
    app = web.Application(client_max_size=client_max_size)
    app[STORE_KEY] = store
    app[SECRETS_KEY] = tuple(secrets)
    app[_TOLERANCE_KEY] = tolerance
    app.router.add_post("/internal/v1/calls/{call_id}/events", _post_event)
    app.router.add_get("/internal/v1/calls/{call_id}/events", _list_events)
    app.router.add_get("/internal/v1/calls/{call_id}", _get_call)
    app.router.add_get("/healthz", _healthz)
    return app
