"""What a worker's process tree costs: CPU seconds and PSS/USS, sampled in a thread.

``psutil`` reads ``/proc``; a job process that exits between two samples loses at most one
interval of CPU (0.25 s by default). PSS (proportional set size) splits shared pages among the
processes that map them, so the PSS of a tree adds up to what the tree really occupies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import psutil

__all__ = ["TreeSampler", "tree_pss_mb"]

_MB = 1e6


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _memory(proc: psutil.Process) -> tuple[float, float] | None:
    """(PSS, USS) in MB, or None when the process is gone."""
    try:
        info = proc.memory_full_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return info.pss / _MB, info.uss / _MB


def tree_pss_mb(pid: int) -> float:
    """The PSS of ``pid`` and all its descendants, in MB."""
    return sum(m[0] for p in _tree(pid) if (m := _memory(p)) is not None)


@dataclass
class TreeSampler:
    """Samples the tree under ``pid`` until :meth:`stop`: CPU every ``interval`` s, memory every
    ``memory_every`` samples. Use as a context manager around the work to measure."""

    pid: int
    interval: float = 0.25
    memory_every: int = 4
    cpu_first: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    peak_tree_pss: float = 0.0
    peak_pss: dict[int, float] = field(default_factory=dict)
    peak_uss: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: set[int] = field(default_factory=set)

    def _cpu(self, procs: list[psutil.Process]) -> None:
        for p in procs:
            try:
                t = p.cpu_times()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            total = t.user + t.system
            self.cpu_first.setdefault(p.pid, total if p.pid in self._started else 0.0)
            self.cpu_last[p.pid] = total

    def _mem(self, procs: list[psutil.Process]) -> None:
        tree = 0.0
        for p in procs:
            m = _memory(p)
            if m is None:
                continue
            tree += m[0]
            self.peak_pss[p.pid] = max(self.peak_pss.get(p.pid, 0.0), m[0])
            self.peak_uss[p.pid] = max(self.peak_uss.get(p.pid, 0.0), m[1])
        self.peak_tree_pss = max(self.peak_tree_pss, tree)

    def sample(self, *, memory: bool = True) -> None:
        """Take one sample now."""
        procs = _tree(self.pid)
        self._cpu(procs)
        if memory:
            self._mem(procs)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            self.sample(memory=n % self.memory_every == 0)

    def __enter__(self) -> TreeSampler:
        self._started = {p.pid for p in _tree(self.pid)}  # CPU already spent is not counted
        self.sample()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sample()

    @property
    def cpu_seconds(self) -> float:
        """CPU (user + system) the tree spent while sampled."""
        return sum(self.cpu_last[pid] - self.cpu_first.get(pid, 0.0) for pid in self.cpu_last)
