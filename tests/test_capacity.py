"""The worker's load counts its own calls and CPU (convoi.worker.capacity), not the machine's."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest

from convoi.settings import WorkerSettings
from convoi.worker.capacity import CpuSampler, OwnLoad, load_figure, process_tree_cpu_seconds
from convoi.worker.server import CALLS_PER_CPU, _ConvoiServer, _load_options


def test_the_load_is_the_larger_of_call_slots_and_own_cpu() -> None:
    assert load_figure(0, 16, 0.0, 0.9) == 0.0
    assert load_figure(4, 16, 0.1, 0.9) == 0.25
    assert load_figure(1, 16, 0.45, 0.9) == 0.5  # CPU-bound: half of the budget used
    assert load_figure(16, 16, 0.0, 0.9) == 1.0
    assert load_figure(20, 16, 2.0, 0.9) == 1.0  # clipped


@dataclass
class FakeTree:
    """CPU seconds by pid at each read, as a process tree would report them."""

    reads: list[dict[int, float]]
    now: list[float] = field(default_factory=lambda: [0.0])

    def read(self, _root: psutil.Process) -> dict[int, float]:
        return self.reads.pop(0)

    def clock(self) -> float:
        return self.now[0]


def test_cpu_share_is_cpu_seconds_per_wall_second_over_the_machines_cpus() -> None:
    tree = FakeTree([{1: 10.0, 2: 5.0}, {1: 10.5, 2: 6.0}, {1: 11.0, 3: 0.2}])
    sampler = CpuSampler(psutil.Process(), cpus=2, clock=tree.clock, read=tree.read)
    assert sampler.sample() == 0.0  # nothing to compare with yet
    tree.now[0] = 1.0
    assert sampler.sample() == pytest.approx(0.75)  # 1.5 CPU-s in 1 s on 2 CPUs
    tree.now[0] = 2.0
    # pid 2 exited and pid 3 is new: only pid 1's 0.5 s count; the average is of both samples
    assert sampler.sample() == pytest.approx((0.75 + 0.25) / 2)


def test_the_process_tree_of_this_process_has_its_cpu_time() -> None:
    me = psutil.Process()
    seconds = process_tree_cpu_seconds(me)
    assert me.pid in seconds and seconds[me.pid] > 0


@dataclass
class FakeServer:
    active_jobs: list[Any]


def test_own_load_reads_the_servers_active_jobs() -> None:
    tree = FakeTree([{1: 0.0}])
    load = OwnLoad(
        8, 0.9, sampler=CpuSampler(psutil.Process(), 1, clock=tree.clock, read=tree.read)
    )
    assert load(FakeServer(active_jobs=[object()] * 2)) == 0.25


def settings(**env: str) -> WorkerSettings:
    return WorkerSettings.model_validate(env)


def test_the_default_is_the_workers_own_load_with_threshold_one() -> None:
    options = _load_options(settings())
    assert options["load_threshold"] == 1.0
    own = options["load_fnc"]
    assert isinstance(own, OwnLoad)
    assert own.max_calls == CALLS_PER_CPU * (psutil.cpu_count() or 1)
    assert own.cpu_budget == 0.9
    custom = _load_options(settings(CONVOI_MAX_CALLS="3", CONVOI_LOAD_THRESHOLD="0.8"))
    assert custom["load_fnc"].max_calls == 3 and custom["load_threshold"] == 0.8


def test_machine_load_and_inf_keep_livekits_behaviour() -> None:
    assert _load_options(settings(CONVOI_LOAD="machine")) == {}
    assert _load_options(settings(CONVOI_LOAD="machine", CONVOI_LOAD_THRESHOLD="0.6")) == {
        "load_threshold": 0.6
    }
    never = _load_options(settings(CONVOI_LOAD_THRESHOLD="inf"))
    assert math.isinf(never["load_threshold"]) and never["load_fnc"]() == 0.0


def test_a_burst_to_an_idle_worker_counts_one_call_slot_per_reserved_call() -> None:
    # livekit-agents 1.8.9 would count each reserved slot as threshold / idle processes (0.5 with
    # two warm processes), refusing the third of a burst of dispatches
    server = _ConvoiServer(load_fnc=OwnLoad(16, 0.9), load_threshold=1.0, num_idle_processes=2)
    server._worker_load = 0.0
    server._reserved_slots = 8
    assert server._get_effective_load() == 0.5
    server._reserved_slots = 16
    assert server._get_effective_load() == 1.0  # full: the 17th is refused


def test_the_forkserver_preloads_convoi_and_livekits_local_models_only_when_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the end-of-turn model (the default) livekit's forkserver preloads its weights, shared
    by every job; with VAD turn detection they are never loaded (~244 MB)."""
    import os

    from convoi.worker import server as server_module
    from convoi.worker.config import WorkerConfig

    monkeypatch.setenv(server_module.PRELOAD_LOCAL_INFERENCE_ENV, "restored after the test")
    monkeypatch.delenv(server_module.PRELOAD_LOCAL_INFERENCE_ENV)
    monkeypatch.delenv("CONVOI_TURN_DETECTION", raising=False)
    built = server_module.build_server(WorkerConfig.from_env())
    assert server_module.PRELOAD_LOCAL_INFERENCE_ENV not in os.environ  # livekit's default: load
    assert "convoi.worker.preload" in built._preload_modules
    monkeypatch.setenv("CONVOI_TURN_DETECTION", "vad")
    built = server_module.build_server(WorkerConfig.from_env())
    assert os.environ[server_module.PRELOAD_LOCAL_INFERENCE_ENV] == "0"  # ~244 MB not loaded
    assert "convoi.worker.preload" in built._preload_modules
