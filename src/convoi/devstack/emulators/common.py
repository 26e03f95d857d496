"""Small helpers shared by the provider emulators."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = ["client_gone", "scrub", "stall", "word_count"]

_SECRET_KEY = re.compile(r"key|token|auth|secret|password", re.IGNORECASE)


def scrub(params: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``params`` with anything that looks like a credential masked."""
    return {k: "***" if _SECRET_KEY.search(k) else v for k, v in params.items()}


def word_count(text: str) -> int:
    """Whitespace-split word count: the emulators' deterministic token approximation."""
    return len(text.split())


def client_gone(request: web.Request) -> bool:
    """True once the client has closed the HTTP connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def stall(request: web.Request, max_ms: int | None) -> None:
    """Wait ``max_ms`` (forever when None) or until the client disconnects, whichever is first."""
    deadline = None if max_ms is None else time.monotonic() + max_ms / 1000
    while not client_gone(request):
        if deadline is not None and time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.05)
