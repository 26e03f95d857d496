"""The API's routers, gathered: public Calls API (and its list, end and webhooks), the
definitions API, internal worker events, health."""

from __future__ import annotations

from fastapi import APIRouter

from convoi.controlplane.api.routes import (
    calls,
    calls_manage,
    definitions,
    events,
    health,
    webhooks,
)

__all__ = ["INTERNAL_PREFIX", "PUBLIC_PREFIX", "api_router"]

PUBLIC_PREFIX = "/api/v1/public"
INTERNAL_PREFIX = "/internal/v1"

api_router = APIRouter()
api_router.include_router(calls.router, prefix=PUBLIC_PREFIX)
api_router.include_router(events.router, prefix=INTERNAL_PREFIX)
api_router.include_router(health.router)
api_router.include_router(calls_manage.router, prefix=PUBLIC_PREFIX)
api_router.include_router(webhooks.router, prefix=PUBLIC_PREFIX)
for _definitions_router in definitions.routers:  # agents, squads, phone numbers, knowledge bases
    api_router.include_router(_definitions_router, prefix=PUBLIC_PREFIX)
