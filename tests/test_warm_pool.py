"""The warm pool: the floor while quiet, the last burst's size after one, within the ceiling."""

from __future__ import annotations

import asyncio
import multiprocessing

import pytest
from livekit.agents import JobExecutorType, JobProcess
from livekit.agents.ipc.proc_pool import ProcPool

from convoi.settings import WorkerSettings
from convoi.worker.server import IDLE_PROCESSES_PER_CPU, _warm_pool_bounds
from convoi.worker.warm_pool import Demand, size_to_demand
from tests.helpers import wait_until


def test_quiet_worker_keeps_the_floor() -> None:
    demand = Demand(1, 8)
    assert demand.target(0.0) == 1
    demand.launched(0.0)
    assert demand.target(1.0) == 1  # one call at a time needs no more


def test_a_burst_keeps_its_size_for_the_window_then_decays() -> None:
    demand = Demand(1, 8, burst_seconds=10, window_seconds=600)
    for at in (100.0, 101.0, 103.0, 109.5):  # four calls within 10 s
        demand.launched(at)
    demand.launched(130.0)  # a lone call later is another burst of one
    assert demand.peak_burst(131.0) == 4
    assert demand.target(131.0) == 4
    assert demand.target(100.0 + 599.0) == 4
    assert demand.target(109.5 + 601.0) == 1  # the burst aged out; the lone call is one


def test_spread_calls_are_not_a_burst() -> None:
    demand = Demand(2, 8, burst_seconds=10)
    for at in range(0, 200, 11):  # one call every 11 s
        demand.launched(float(at))
    assert demand.target(200.0) == 2


def test_the_ceiling_bounds_a_big_burst() -> None:
    demand = Demand(1, 3)
    for _ in range(20):
        demand.launched(5.0)
    assert demand.target(6.0) == 3
    assert Demand(4, 2).target(0.0) == 4  # a ceiling under the floor is the floor


@pytest.mark.parametrize(
    ("env", "bounds"),
    [
        ({}, (None, min(IDLE_PROCESSES_PER_CPU * 2, 16))),
        ({"CONVOI_NUM_IDLE_PROCESSES": "1", "CONVOI_MAX_IDLE_PROCESSES": "3"}, (1, 3)),
        ({"CONVOI_NUM_IDLE_PROCESSES": "3", "CONVOI_MAX_IDLE_PROCESSES": "3"}, (3, 3)),
        ({"CONVOI_NUM_IDLE_PROCESSES": "5", "CONVOI_MAX_IDLE_PROCESSES": "2"}, (5, 5)),
        ({"CONVOI_MAX_CALLS": "3"}, (None, 3)),
    ],
)
def test_bounds_from_the_settings(
    env: dict[str, str], bounds: tuple[int | None, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _warm_pool_bounds(WorkerSettings()) == bounds


def _setup(_proc: JobProcess) -> None:
    return None


async def _entrypoint(_ctx: object) -> None:
    return None


def _pool(ceiling: int) -> ProcPool:
    return ProcPool(
        initialize_process_fnc=_setup,
        job_entrypoint_fnc=_entrypoint,  # type: ignore[arg-type]
        session_end_fnc=None,
        simulation_end_fnc=None,
        num_idle_processes=ceiling,
        initialize_timeout=30,
        close_timeout=5,
        session_end_timeout=5,
        inference_executor=None,
        job_executor_type=JobExecutorType.THREAD,  # livekit's pool, without forking
        mp_ctx=multiprocessing.get_context("spawn"),
        memory_warn_mb=0,
        memory_limit_mb=0,
        http_proxy=None,
        loop=asyncio.get_running_loop(),
    )


def _warm(pool: ProcPool) -> int:
    return pool._warmed_proc_queue.qsize()


async def test_livekits_pool_keeps_the_floor_then_grows_after_a_burst() -> None:
    pool = _pool(ceiling=4)
    now = [0.0]
    resize = size_to_demand(pool, Demand(1, 4), clock=lambda: now[0])
    assert resize is not None
    await pool.start()
    try:
        await wait_until(lambda: _warm(pool) >= 1, timeout=30)
        assert len(pool.processes) == 1  # not the pool's built-in size of 4
        for _ in range(3):  # three calls launched at once
            pool.emit("process_job_launched", None)
        await wait_until(lambda: _warm(pool) >= 3, timeout=30)
        assert len(pool.processes) == 3
        now[0] = 10_000.0  # the burst ages out: no new process is started for it
        resize()
        assert pool._default_num_idle_processes == 1
    finally:
        await pool.aclose()
