"""The soak command's checks: memory growth, leaked processes and rooms, lost reports."""

from __future__ import annotations

from collections import Counter

from convoi.devstack.soak import IDLE_PROCESSES, Sample, SoakResult, growth, render, verdict


def _run(main: list[float], tree: list[float], **kw: object) -> SoakResult:
    """A run sampled every 10 s with the given memory series (warm-up: the first 30 s)."""
    samples = [
        Sample(at_s=10.0 * i, main_pss_mb=m, tree_pss_mb=t, job_processes=4, rooms=4)
        for i, (m, t) in enumerate(zip(main, tree, strict=True))
    ]
    result = SoakResult(concurrency=4, minutes=1.0, warmup_s=30.0, samples=samples)
    result.placed = 12
    result.ended = Counter({"completed / customer_hangup": 12})
    result.idle_job_processes = IDLE_PROCESSES
    for key, value in kw.items():
        setattr(result, key, value)
    return result


FLAT = [100.0] * 10


def test_a_steady_worker_passes() -> None:
    result = _run(FLAT, [600.0] * 10)
    assert verdict(result, max_growth=0.10, window_s=20.0) == []
    assert "verdict: PASS" in render(result, max_growth=0.10, window_s=20.0)


def test_memory_that_keeps_growing_fails_and_says_which() -> None:
    main = [100.0, 100, 100, 100, 104, 108, 112, 116, 120, 124]  # +24 % after the warm-up
    failed = verdict(_run(main, [600.0] * 10), max_growth=0.10, window_s=20.0)
    assert len(failed) == 1 and failed[0].startswith("main process memory grew")


def test_the_warm_up_is_not_counted_as_growth() -> None:
    main = [50.0, 70, 90, 100, 100, 100, 100, 100, 100, 101]  # loading models, then flat
    assert verdict(_run(main, [600.0] * 10), max_growth=0.10, window_s=20.0) == []


def test_leaked_processes_rooms_and_lost_reports_each_fail() -> None:
    result = _run(
        FLAT,
        FLAT,
        idle_job_processes=IDLE_PROCESSES + 3,
        leftover_rooms=["soak-1"],
        missing_reports=["call_a"],
        duplicate_reports=["call_b"],
    )
    failed = verdict(result, max_growth=0.10, window_s=20.0)
    assert len(failed) == 4, failed
    assert "FAIL" in render(result, max_growth=0.10, window_s=20.0)


def test_a_run_too_short_to_measure_is_not_a_pass() -> None:
    result = _run([100.0, 100.0], [600.0, 600.0])  # all inside the warm-up
    assert any("not enough samples" in f for f in verdict(result, max_growth=0.1, window_s=20.0))


def test_growth() -> None:
    assert abs((growth(100.0, 110.0) or 0.0) - 0.10) < 1e-9
    assert growth(None, 1.0) is None and growth(0.0, 1.0) is None


def test_calls_that_did_not_complete_fail_the_soak_unless_allowed() -> None:
    result = _run(
        FLAT, FLAT, ended=Counter({"completed / customer_hangup": 10, "failed / worker_error": 2})
    )
    assert verdict(result, max_growth=0.1, window_s=20.0) == [
        "2 calls did not complete (allowed 0)"
    ]
    assert verdict(result, max_growth=0.1, window_s=20.0, max_failed=2) == []
