"""What the app holds for its routes: settings, databases, LiveKit gateway, definitions, limits."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from convoi.controlplane.db.engine import Database
from convoi.controlplane.limits import AccountLocks, RateLimiter
from convoi.controlplane.livekit import LiveKitGateway
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.definitions.models import Definitions

__all__ = ["ControlPlaneState"]


@dataclass
class ControlPlaneState:
    """Shared by every request (``app.state.convoi``); built by ``create_app``."""

    settings: ControlPlaneSettings
    database: Database
    gateway: LiveKitGateway
    definitions: Definitions
    events_database: Database | None = None
    """The worker's call events' own pool (default: ``database``)."""
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
    admission: AccountLocks = field(default_factory=AccountLocks)
    events_limiter: anyio.CapacityLimiter | None = None
    """Threads of the event ingest (made on first use, in the event loop)."""

    @property
    def events_db(self) -> Database:
        """Where call events are stored."""
        return self.events_database or self.database
