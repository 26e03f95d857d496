"""The AgentServer: explicit dispatch under the configured agent name."""

from __future__ import annotations

from livekit.agents import AgentServer

from convoi.settings import WorkerSettings
from convoi.worker.entrypoint import entrypoint, prewarm

__all__ = ["build_server"]


def build_server(settings: WorkerSettings) -> AgentServer:
    """An AgentServer that registers as ``settings.agent_name`` and runs one call per job."""
    kwargs = {}
    if settings.num_idle_processes is not None:
        kwargs["num_idle_processes"] = settings.num_idle_processes
    server = AgentServer(
        setup_fnc=prewarm,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        port=settings.health_port,
        max_retry=settings.max_retry,
        **kwargs,
    )
    server.rtc_session(entrypoint, agent_name=settings.agent_name)
    return server
