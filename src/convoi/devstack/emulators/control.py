"""Control endpoints (``/_emulator``): inspect records, reset, load scenarios."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from pydantic import ValidationError

from .scenario import Scenario
from .state import STATE_KEY

__all__ = ["add_routes"]

logger = logging.getLogger("convoi.devstack.emulators")

_PROVIDERS = ("llm", "stt", "tts")


def add_routes(app: web.Application, prefix: str = "/_emulator") -> None:
    """Register the control routes under ``prefix``."""
    app.router.add_get(f"{prefix}/health", _health)
    app.router.add_get(f"{prefix}/requests", _requests)
    app.router.add_get(f"{prefix}/usage", _usage)
    app.router.add_post(f"{prefix}/reset", _reset)
    app.router.add_get(f"{prefix}/scenario", _get_scenario)
    app.router.add_post(f"{prefix}/scenario", _set_scenario)


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response({"ok": True, "records": len(state.records)})


async def _requests(request: web.Request) -> web.Response:
    provider = request.query.get("provider")
    if provider is not None and provider not in _PROVIDERS:
        return web.json_response({"error": f"provider must be one of {_PROVIDERS}"}, status=400)
    records = request.app[STATE_KEY].select(provider)
    return web.json_response(records, dumps=lambda o: json.dumps(o, default=str))


async def _usage(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].usage())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    logger.info("emulator reset")
    return web.json_response({"ok": True})


async def _get_scenario(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].scenario.model_dump(mode="json"))


async def _set_scenario(request: web.Request) -> web.Response:
    try:
        scenario = Scenario.model_validate_json(await request.read())
    except ValidationError as e:
        return web.json_response(
            {"error": "invalid scenario", "details": json.loads(e.json())}, status=400
        )
    request.app[STATE_KEY].load(scenario)
    logger.info(
        "scenario loaded: %d caller turns, %d llm rules", len(scenario.caller), len(scenario.llm)
    )
    return web.json_response({"ok": True})
