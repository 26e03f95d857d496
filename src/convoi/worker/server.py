"""The AgentServer: explicit dispatch under the configured agent name."""

from __future__ import annotations

import functools
import math
from typing import Any

from livekit.agents import AgentServer

from convoi.reporting.channel import ReportingChannel
from convoi.worker.config import WorkerConfig
from convoi.worker.entrypoint import entrypoint, prewarm
from convoi.worker.metrics import metrics_server_options
from convoi.worker.supervision import watch_job_processes

__all__ = ["MAIN_PROCESS_POLL_SECONDS", "build_server"]

MAIN_PROCESS_POLL_SECONDS = 2.0
"""How often the worker's main process looks for undelivered events in the outbox."""


def build_server(config: WorkerConfig) -> AgentServer:
    """An AgentServer that registers as ``config.settings.agent_name`` and runs one call per job.

    ``config`` travels to every job process with the setup and entrypoint functions."""
    settings = config.settings
    kwargs: dict[str, Any] = {}
    if settings.num_idle_processes is not None:
        kwargs["num_idle_processes"] = settings.num_idle_processes
    if settings.load_threshold is not None:
        kwargs["load_threshold"] = settings.load_threshold
        if math.isinf(settings.load_threshold):
            # livekit-server also weighs the load a worker reports: report none, so a busy
            # machine's CPU never makes the only worker look full
            kwargs["load_fnc"] = _no_load
    server = AgentServer(
        setup_fnc=functools.partial(prewarm, config),
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        port=settings.health_port,
        max_retry=settings.max_retry,
        initialize_process_timeout=settings.process_init_timeout_seconds,
        **metrics_server_options(config.metrics),
        **kwargs,
    )
    server.rtc_session(functools.partial(entrypoint, config), agent_name=settings.agent_name)
    _send_leftover_events_from_the_main_process(server, config)
    watch_job_processes(server, config)
    return server


def _no_load() -> float:
    return 0.0


def _send_leftover_events_from_the_main_process(server: AgentServer, config: WorkerConfig) -> None:
    """Events a previous run could not deliver (receiver down, worker killed) are resent as soon
    as the worker starts, without waiting for a new call; the sender then keeps polling the shared
    outbox for events of jobs that ended before their delivery finished."""
    channels: list[ReportingChannel] = []

    @server.on("worker_started")
    def _on_started() -> None:
        if config.delivery.configured:
            channel = ReportingChannel(config.delivery, poll_interval=MAIN_PROCESS_POLL_SECONDS)
            channel.start()
            channels.append(channel)  # keep a reference for the process's lifetime
