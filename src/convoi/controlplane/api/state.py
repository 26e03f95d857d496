"""What the app holds for its routes: settings, database, LiveKit gateway, definitions."""

from __future__ import annotations

from dataclasses import dataclass

from convoi.controlplane.db.engine import Database
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
