"""The AgentServer: explicit dispatch under the configured agent name."""

from __future__ import annotations

import asyncio
import functools
import math
import os
from typing import Any

from livekit.agents import AgentServer
from livekit.agents.worker import ServerEnvOption

from convoi.reporting.channel import ReportingChannel
from convoi.settings import WorkerSettings
from convoi.worker.capacity import OwnLoad
from convoi.worker.config import WorkerConfig
from convoi.worker.entrypoint import entrypoint, prewarm
from convoi.worker.metrics import metrics_server_options
from convoi.worker.supervision import watch_job_processes
from convoi.worker.warm_pool import Demand, keep_resizing, size_to_demand

__all__ = ["CALLS_PER_CPU", "MAIN_PROCESS_POLL_SECONDS", "PRELOADED_MODULES", "build_server"]

PRELOADED_MODULES = ("convoi.worker.preload",)
"""Imported once in livekit's forkserver (see convoi.worker.preload), so every job process starts
with Convoi's code and the providers' TLS context already loaded, its pages shared copy-on-write,
instead of importing and building them itself (about a second on a busy 2-core machine)."""

PRELOAD_LOCAL_INFERENCE_ENV = "LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE"
"""livekit-agents' switch for preloading its local inference models in the forkserver."""

CALLS_PER_CPU = 8
"""Default ``CONVOI_MAX_CALLS`` per CPU of the machine (see BENCHMARKS.md, capacity)."""

IDLE_PROCESSES_PER_CPU = 4
"""Default ``CONVOI_MAX_IDLE_PROCESSES`` per CPU (see convoi.worker.warm_pool)."""

MAIN_PROCESS_POLL_SECONDS = 2.0
"""How often the worker's main process looks for undelivered events in the outbox."""


def build_server(config: WorkerConfig) -> AgentServer:
    """An AgentServer that registers as ``config.settings.agent_name`` and runs one call per job.

    ``config`` travels to every job process with the setup and entrypoint functions."""
    settings = config.settings
    if settings.turn_detection == "vad":
        # livekit's forkserver would load its local end-of-turn model (~244 MB) and VAD for
        # every job to share; with VAD turn detection nothing uses it
        os.environ.setdefault(PRELOAD_LOCAL_INFERENCE_ENV, "0")
    kwargs: dict[str, Any] = {}
    floor, ceiling = _warm_pool_bounds(settings)
    kwargs["num_idle_processes"] = ceiling  # the pool's cap; it is sized to demand below it
    kwargs.update(_load_options(settings))
    server = _ConvoiServer(
        idle_floor=floor,
        idle_ceiling=ceiling,
        setup_fnc=functools.partial(prewarm, config),
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        port=settings.health_port,
        max_retry=settings.max_retry,
        initialize_process_timeout=settings.process_init_timeout_seconds,
        preload_modules=list(PRELOADED_MODULES),
        **metrics_server_options(config.metrics),
        **kwargs,
    )
    server.rtc_session(functools.partial(entrypoint, config), agent_name=settings.agent_name)
    _send_leftover_events_from_the_main_process(server, config)
    watch_job_processes(server, config)
    return server


def _load_options(settings: WorkerSettings) -> dict[str, Any]:
    """``load_fnc`` and ``load_threshold`` for the settings (see convoi.worker.capacity)."""
    threshold = settings.load_threshold
    if threshold is not None and math.isinf(threshold):
        # livekit-server also weighs the load a worker reports: report none, so a busy
        # machine's CPU never makes the only worker look full
        return {"load_threshold": threshold, "load_fnc": _no_load}
    if settings.load == "machine":
        return {} if threshold is None else {"load_threshold": threshold}
    max_calls = settings.max_calls or CALLS_PER_CPU * (os.cpu_count() or 1)
    return {
        "load_threshold": 1.0 if threshold is None else threshold,
        "load_fnc": OwnLoad(max_calls, settings.cpu_budget),
    }


def _warm_pool_bounds(settings: WorkerSettings) -> tuple[int | None, int]:
    """The warm pool's floor (None: livekit's default) and ceiling (the floor: a fixed pool)."""
    floor = settings.num_idle_processes
    ceiling = settings.max_idle_processes
    if ceiling is None:
        cpus = os.cpu_count() or 1
        ceiling = min(IDLE_PROCESSES_PER_CPU * cpus, settings.max_calls or CALLS_PER_CPU * cpus)
    return floor, ceiling if floor is None else max(ceiling, floor)


def _no_load() -> float:
    return 0.0


class _ConvoiServer(AgentServer):
    """livekit's AgentServer, with calls accepted but not yet launched counted as call slots and
    its warm process pool sized to demand.

    livekit-agents 1.8.9 counts each reserved slot (said "available", not launched yet) of an
    idle worker as ``load_threshold / num_idle_processes``, so a burst of three dispatches to an
    idle worker with two warm processes refused the third, and livekit-server, with no other
    worker, dropped it. With the worker's own load a reserved call is one call slot.

    livekit builds its process pool inside ``run()``; the pool is taken as it is assigned, before
    it starts, and handed to :func:`convoi.worker.warm_pool.size_to_demand`."""

    def __init__(
        self, *args: Any, idle_floor: int | None = None, idle_ceiling: int | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self._idle_bounds = (idle_floor, idle_ceiling)
        self._resizing: asyncio.Task[None] | None = None

    @property
    def _proc_pool(self) -> Any:
        return self.__dict__["_convoi_proc_pool"]

    @_proc_pool.setter
    def _proc_pool(self, pool: Any) -> None:
        self.__dict__["_convoi_proc_pool"] = pool
        floor, ceiling = self._idle_bounds
        if ceiling is None or floor == ceiling:  # a fixed pool (or a test's bare server)
            return
        if floor is None:  # livekit's default (one per CPU; none in dev mode)
            default: ServerEnvOption[int] = AgentServer._default_num_idle_processes
            dev = getattr(self, "_devmode", False)
            floor = int(default.dev_default if dev else default.prod_default)
        resize = size_to_demand(pool, Demand(floor, ceiling))
        if resize is not None:
            self._resizing = asyncio.get_running_loop().create_task(
                keep_resizing(resize), name="convoi-warm-pool"
            )

    def _get_effective_load(self) -> float:
        own = self.load_fnc
        if not isinstance(own, OwnLoad):
            return super()._get_effective_load()
        return self._worker_load + self._reserved_slots / own.max_calls


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
