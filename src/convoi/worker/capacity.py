"""The load a worker reports to LiveKit: its own calls and its own CPU, not the machine's.

livekit-agents' default load is the CPU utilisation of the whole machine (or container), so a
worker on a box where anything else runs (a test suite, a second worker, the callers of a
benchmark) reports itself full while it is idle, and refuses calls it could take. A Convoi
worker's load is the larger of two of its own figures:

- its call slots in use: ``active calls / CONVOI_MAX_CALLS``;
- its own CPU: the CPU time of the worker's process tree (main process, forkserver, job
  processes) per second of wall time, as a share of the machine's CPUs, over
  ``CONVOI_CPU_BUDGET`` (the share of the machine the worker may use).

At 1.0 (livekit's threshold: ``CONVOI_LOAD_THRESHOLD``, default 1.0 with this load) the worker is
full. See docs/operations.md ("Load and capacity") for how to size both.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil

__all__ = ["CpuSampler", "OwnLoad", "load_figure", "process_tree_cpu_seconds"]

CPU_WINDOW = 5
"""Samples in the CPU moving average (livekit samples the load every 0.5 s: 2.5 s)."""


def load_figure(active_calls: int, max_calls: int, cpu_share: float, cpu_budget: float) -> float:
    """The worker's load, 0 (idle) to 1 (full): the larger of its call slots in use and its own
    CPU share over its budget. Pure."""
    slots = active_calls / max_calls if max_calls > 0 else 1.0
    cpu = cpu_share / cpu_budget if cpu_budget > 0 else 1.0
    return min(1.0, max(0.0, slots, cpu))


def process_tree_cpu_seconds(root: psutil.Process) -> dict[int, float]:
    """User + system CPU seconds of ``root`` and each of its descendants, by pid."""
    seconds: dict[int, float] = {}
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        seconds[proc.pid] = times.user + times.system
    return seconds


@dataclass
class CpuSampler:
    """The CPU share of one process tree: CPU seconds per wall second over the machine's CPUs,
    averaged over the last :data:`CPU_WINDOW` samples. A process seen for the first time counts
    from that sample on; one that exited stops counting."""

    root: psutil.Process
    cpus: int
    clock: Callable[[], float] = time.monotonic
    read: Callable[[psutil.Process], dict[int, float]] = process_tree_cpu_seconds
    _last: dict[int, float] = field(default_factory=dict)
    _last_at: float | None = None
    _samples: deque[float] = field(default_factory=lambda: deque(maxlen=CPU_WINDOW))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self) -> float:
        """Take a sample; return the moving average (0 before two samples exist)."""
        with self._lock:
            now, seconds = self.clock(), self.read(self.root)
            if self._last_at is not None and now > self._last_at:
                used = sum(
                    max(0.0, total - self._last[pid])
                    for pid, total in seconds.items()
                    if pid in self._last
                )
                self._samples.append(used / (now - self._last_at) / max(1, self.cpus))
            self._last, self._last_at = seconds, now
            return sum(self._samples) / len(self._samples) if self._samples else 0.0


class _Server(Protocol):
    @property
    def active_jobs(self) -> list[Any]: ...


class OwnLoad:
    """livekit-agents' ``load_fnc`` for a Convoi worker (called in a thread every 0.5 s)."""

    def __init__(
        self, max_calls: int, cpu_budget: float, *, sampler: CpuSampler | None = None
    ) -> None:
        self.max_calls = max_calls
        self.cpu_budget = cpu_budget
        self._sampler = sampler or CpuSampler(psutil.Process(), os.cpu_count() or 1)

    def __call__(self, server: _Server) -> float:
        """The worker's load now (see :func:`load_figure`)."""
        return load_figure(
            len(server.active_jobs), self.max_calls, self._sampler.sample(), self.cpu_budget
        )
