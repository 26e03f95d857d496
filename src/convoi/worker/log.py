"""The worker's logger. Per-call fields (call_id, room, job_id) ride on ``extra``."""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("convoi.worker")
