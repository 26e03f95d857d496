"""``/healthz``: liveness (no database access)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(tags=["health"], include_in_schema=False)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Answer ``{"status": "ok"}``."""
    return {"status": "ok"}
