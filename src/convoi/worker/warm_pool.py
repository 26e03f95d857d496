"""Warm job processes sized to demand: few while the worker is quiet, as many as its last burst.

livekit-agents keeps a fixed number of idle job processes (``num_idle_processes``); a call that
finds none waits for a process to be forked and initialised on its path (seconds on a busy
machine: the benchmark's dispatch → agent joined p95 was 9 s at 4 simultaneous calls with one
warm process). Keeping many warm costs memory all day (≈ 35 MB each). Here the pool keeps
``CONVOI_NUM_IDLE_PROCESSES`` (the floor) until calls come in bursts, then as many as the largest
burst of the last :data:`DEMAND_WINDOW_SECONDS` (calls launched within
:data:`BURST_SECONDS` of each other), at most ``CONVOI_MAX_IDLE_PROCESSES``; livekit's own cap
(no more warm processes than the load leaves room for) still applies on top.

:class:`Demand` is the pure figure; :func:`size_to_demand` wires it to livekit's process pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from convoi.worker.log import logger

__all__ = [
    "BURST_SECONDS",
    "DEMAND_WINDOW_SECONDS",
    "RESIZE_INTERVAL_SECONDS",
    "Demand",
    "keep_resizing",
    "size_to_demand",
]

BURST_SECONDS = 10.0
"""Calls launched within this span of each other count as one burst."""
DEMAND_WINDOW_SECONDS = 600.0
"""How long a burst keeps its warm processes."""
RESIZE_INTERVAL_SECONDS = 1.0
"""How often the pool's size is recomputed."""


class Demand:
    """Call launches over time, and the warm processes they call for. Pure (the clock is given)."""

    def __init__(
        self,
        floor: int,
        ceiling: int,
        *,
        burst_seconds: float = BURST_SECONDS,
        window_seconds: float = DEMAND_WINDOW_SECONDS,
    ) -> None:
        self.floor = max(0, floor)
        self.ceiling = max(self.floor, ceiling)
        self._burst = burst_seconds
        self._window = window_seconds
        self._launches: deque[float] = deque()

    def launched(self, at: float) -> None:
        """A call was handed a job process at ``at`` (seconds, any monotonic clock)."""
        self._launches.append(at)

    def peak_burst(self, now: float) -> int:
        """The most launches within :data:`BURST_SECONDS` of each other in the window."""
        while self._launches and self._launches[0] < now - self._window:
            self._launches.popleft()
        peak, start = 0, 0
        times = list(self._launches)
        for end, at in enumerate(times):
            while at - times[start] > self._burst:
                start += 1
            peak = max(peak, end - start + 1)
        return peak

    def target(self, now: float) -> int:
        """Warm processes to keep: the floor, or the window's peak burst, within the ceiling."""
        return min(self.ceiling, max(self.floor, self.peak_burst(now)))


def size_to_demand(
    pool: Any, demand: Demand, *, clock: Callable[[], float] = time.monotonic
) -> Callable[[], None] | None:
    """Make livekit's process ``pool`` keep ``demand.target()`` warm processes, starting with the
    floor; returns the function that re-applies the target (None: this livekit-agents' pool has
    no such knob, and keeps its fixed size).

    livekit's pool keeps ``min(target, default)`` idle processes, its load loop sets the target
    (the room the load leaves) and ``default`` is the size it was built with (here the ceiling):
    ``default`` is what this moves."""
    if not hasattr(pool, "_default_num_idle_processes") or not hasattr(pool, "on"):
        return None

    def resize() -> None:
        wanted = demand.target(clock())
        if pool._default_num_idle_processes != wanted:
            logger.info("warm job processes: %d", wanted)
        pool._default_num_idle_processes = wanted

    def on_launch(_proc: object) -> None:
        demand.launched(clock())
        resize()

    pool._default_num_idle_processes = demand.floor
    pool.on("process_job_launched", on_launch)
    return resize


async def keep_resizing(resize: Callable[[], None]) -> None:
    """Re-apply the target every :data:`RESIZE_INTERVAL_SECONDS` (a burst ages out of the
    window without any event)."""
    while True:
        await asyncio.sleep(RESIZE_INTERVAL_SECONDS)
        with contextlib.suppress(Exception):
            resize()
