"""The control plane's logger (stdlib logging; per-call fields go in ``extra``)."""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("convoi.controlplane")
