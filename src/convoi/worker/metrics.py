"""Prometheus metrics of the worker: calls, active calls, handoffs, latency and cost.

Every call runs in its own job process, so the metrics use ``prometheus_client``'s multiprocess
mode: each process writes its samples to files in one folder (``PROMETHEUS_MULTIPROC_DIR``) and
livekit-agents' AgentServer, in the main process, serves all of them summed up at
``http://<host>:<prometheus_port>/metrics`` (its ``telemetry.http_server`` builds a fresh
``CollectorRegistry`` with a ``MultiProcessCollector`` per scrape). We reuse that server rather
than running a second one; :func:`metrics_server_options` gives the AgentServer its options.

The metrics (besides livekit-agents' own ``lk_agents_*``):

=========================================  =========  ========================================
``convoi_calls_total{status,reason}``      counter    calls ended, by final status and reason
``convoi_active_calls``                    gauge      calls between ``active`` and their end
``convoi_handoffs_total``                  counter    squad handoffs in ended calls
``convoi_voice_to_voice_latency_seconds``  histogram  end of caller speech → first agent audio
``convoi_greeting_latency_seconds``        histogram  call ``active`` → first agent speech
``convoi_call_cost_usd_total``             counter    cost of ended calls, USD
=========================================  =========  ========================================

Usage from a job (never raises: a metrics problem is logged, the call carries on)::

    call_started()                                   # the call became active
    observe_greeting_latency(seconds)                # first agent speech
    observe_turn_latency(turn.e2e_latency)           # each turn
    call_ended(status, reason, cost=Decimal(...), handoffs=2)

Metric objects are created on first use, so the worker's main process (which records none of
them) opens no sample files before the AgentServer empties the folder at start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TypedDict

from prometheus_client import Counter, Gauge, Histogram, multiprocess
from prometheus_client import values as _prometheus_values
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "GREETING_BUCKETS",
    "VOICE_TO_VOICE_BUCKETS",
    "MetricsServerOptions",
    "MetricsSettings",
    "call_ended",
    "call_started",
    "enable_multiprocess",
    "forget_dead_processes",
    "metrics_server_options",
    "observe_greeting_latency",
    "observe_turn_latency",
]

logger = logging.getLogger("convoi.worker.metrics")

VOICE_TO_VOICE_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)
"""Seconds; a good turn is under 1 s, 2-3 s feels broken."""
GREETING_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds from the call becoming active to the agent's first speech."""

_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsServerOptions(TypedDict, total=False):
    """The AgentServer's Prometheus options (empty: no endpoint)."""

    prometheus_port: int
    prometheus_multiproc_dir: str


class MetricsSettings(BaseSettings):
    """Where the worker serves its Prometheus metrics, read from the environment (and ``.env``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    port: int | None = Field(None, alias="CONVOI_METRICS_PORT", ge=0, le=65535)
    """Port of the Prometheus endpoint (``GET /metrics``) served by the worker's main process.
    Unset: no endpoint (the container image sets 9100). ``0`` picks a free port (logged)."""
    dir: Path | None = Field(None, alias="CONVOI_METRICS_DIR")
    """Folder where every process of the worker writes its samples (Prometheus multiprocess
    mode); emptied when the worker starts, so one folder per worker. Default:
    ``PROMETHEUS_MULTIPROC_DIR`` when set, else a new temporary folder."""


def metrics_server_options(settings: MetricsSettings | None = None) -> MetricsServerOptions:
    """Keyword arguments for ``AgentServer(...)``: ``prometheus_port`` and
    ``prometheus_multiproc_dir``, or ``{}`` when ``CONVOI_METRICS_PORT`` is unset.

    Call it in the worker's main process before the AgentServer starts: it also switches this
    process to multiprocess mode (:func:`enable_multiprocess`), so the job processes, which
    inherit the environment, write their samples where the endpoint reads them.
    """
    settings = settings or MetricsSettings()
    if settings.port is None:
        return {}
    folder = settings.dir or (Path(os.environ[_ENV]) if os.environ.get(_ENV) else None)
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="convoi-metrics-"))
    enable_multiprocess(folder)
    return MetricsServerOptions(prometheus_port=settings.port, prometheus_multiproc_dir=str(folder))


def enable_multiprocess(folder: Path) -> None:
    """Write this process's metrics (and its children's) as files in ``folder``.

    ``prometheus_client`` picks in-memory or file-backed values when it is first imported, from
    ``PROMETHEUS_MULTIPROC_DIR``; livekit-agents imports it long before the AgentServer sets that
    variable, so its own main-process metrics (``lk_agents_active_job_count``, …) would be
    missing from the endpoint. Choosing the value class again here (the module keeps
    ``values.ValueClass`` swappable on purpose) fixes that for every metric child created from now
    on; livekit-agents creates its children lazily, after the AgentServer has emptied the folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[_ENV] = str(folder)
    if not getattr(_prometheus_values.ValueClass, "_multiprocess", False):
        _prometheus_values.ValueClass = _prometheus_values.get_value_class()


@dataclass(frozen=True)
class _Metrics:
    calls: Counter
    active: Gauge
    handoffs: Counter
    voice_to_voice: Histogram
    greeting: Histogram
    cost: Counter


_lock = threading.Lock()
_metrics: _Metrics | None = None
_open_calls = 0


def _get() -> _Metrics:
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = _Metrics(
                calls=Counter(
                    "convoi_calls",
                    "Calls ended, by final status and ended_reason.",
                    ["status", "reason"],
                ),
                active=Gauge(
                    "convoi_active_calls",
                    "Calls in progress (from active to their end).",
                    multiprocess_mode="livesum",
                ),
                handoffs=Counter("convoi_handoffs", "Squad handoffs in ended calls."),
                voice_to_voice=Histogram(
                    "convoi_voice_to_voice_latency_seconds",
                    "End of the caller's speech to the agent's first reply audio (e2e_latency).",
                    buckets=VOICE_TO_VOICE_BUCKETS,
                ),
                greeting=Histogram(
                    "convoi_greeting_latency_seconds",
                    "Call active to the agent's first speech.",
                    buckets=GREETING_BUCKETS,
                ),
                cost=Counter("convoi_call_cost_usd", "Cost of ended calls, USD."),
            )
        return _metrics


def call_started() -> None:
    """A call became active (the caller is there): ``convoi_active_calls`` + 1."""
    global _open_calls
    try:
        forget_dead_processes()
        _get().active.inc()
        with _lock:
            _open_calls += 1
    except Exception:
        logger.warning("could not record call_started metric", exc_info=True)


def call_ended(status: str, reason: str | None, cost: Decimal, handoffs: int = 0) -> None:
    """A call ended (including calls rejected before they started).

    Counts it under ``status``/``reason``, adds its cost and handoffs, and takes it off
    ``convoi_active_calls`` if :func:`call_started` counted it.
    """
    global _open_calls
    try:
        m = _get()
        with _lock:
            was_open, _open_calls = _open_calls > 0, max(0, _open_calls - 1)
        if was_open:
            m.active.dec()
        m.calls.labels(status=status, reason=reason or "none").inc()
        if handoffs > 0:
            m.handoffs.inc(handoffs)
        amount = float(cost)
        if amount > 0:
            m.cost.inc(amount)
        elif amount < 0:
            logger.warning("negative call cost %s not counted", cost)
    except Exception:
        logger.warning("could not record call_ended metrics", exc_info=True)


def observe_turn_latency(seconds: float | None) -> None:
    """One turn's voice-to-voice latency (``TurnLatency.e2e_latency``); ``None`` is skipped."""
    _observe("voice_to_voice", seconds)


def observe_greeting_latency(seconds: float | None) -> None:
    """Seconds from the call becoming active to the agent's first speech; ``None`` is skipped."""
    _observe("greeting", seconds)


def _observe(name: str, seconds: float | None) -> None:
    if seconds is None or not seconds >= 0:  # also skips NaN
        return
    try:
        histogram: Histogram = getattr(_get(), name)
        histogram.observe(seconds)
    except Exception:
        logger.warning("could not record %s latency metric", name, exc_info=True)


_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def forget_dead_processes(folder: Path | None = None) -> list[int]:
    """Remove the live-gauge files of processes that no longer exist; returns their pids.

    A job process that dies mid-call (killed, out of memory) cannot take itself off
    ``convoi_active_calls``; its file would keep counting it. Counters and histograms of dead
    processes are kept (they must never go down). Called at each :func:`call_started`.
    """
    path = folder or (Path(os.environ[_ENV]) if os.environ.get(_ENV) else None)
    if path is None or not path.is_dir():
        return []
    dead = sorted(
        {
            int(match.group(1))
            for name in os.listdir(path)
            if (match := _LIVE_FILE.match(name)) and not _alive(int(match.group(1)))
        }
    )
    for pid in dead:
        with contextlib.suppress(OSError):  # another process may remove it first
            multiprocess.mark_process_dead(pid, str(path))
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
