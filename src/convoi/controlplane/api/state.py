"""What the app holds for its routes: settings, databases, LiveKit gateway, definitions, limits."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from convoi.controlplane.db.engine import Database
from convoi.controlplane.limits import AccountLocks, RateLimiter, RequestRateLimiter
from convoi.controlplane.livekit import LiveKitGateway
from convoi.controlplane.redis_limits import RedisRateLimiter
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.definitions.models import Definitions

__all__ = ["ControlPlaneState", "rate_limiter_for"]


@dataclass
class ControlPlaneState:
    """Shared by every request (``app.state.convoi``); built by ``create_app``."""

    settings: ControlPlaneSettings
    database: Database
    gateway: LiveKitGateway
    definitions: Definitions
    events_database: Database | None = None
    """The worker's call events' own pool (default: ``database``)."""
    rate_limiter: RequestRateLimiter = field(default_factory=RateLimiter)
    """In process, or in Redis with ``CONVOI_REDIS_URL`` (:func:`rate_limiter_for`)."""
    admission: AccountLocks = field(default_factory=AccountLocks)
    seeded_accounts: set[str] = field(default_factory=set)
    """Accounts known to hold definitions (the shipped ones are imported at most once)."""
    events_limiter: anyio.CapacityLimiter | None = None
    """Threads of the event ingest (made on first use, in the event loop)."""

    @property
    def events_db(self) -> Database:
        """Where call events are stored."""
        return self.events_database or self.database


def rate_limiter_for(settings: ControlPlaneSettings) -> RequestRateLimiter:
    """Redis-backed buckets with ``CONVOI_REDIS_URL``, else this process's own."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url)
    return RateLimiter()
