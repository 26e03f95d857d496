"""The side-by-side benchmark's smoke mode: both workers produce every measure.

``python -m convoi.devstack.bench --smoke`` starts its own livekit-server, emulators, convoi's
worker and the stock livekit-agents agent, places one call (one turn) to each and one at
concurrency 1. This asserts outcomes only (every measure is a number for both workers, the ratio
column is computed), never speed: targets live in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convoi.devstack.bench.measures import JOIN_MEASURES, MEMORY_MEASURES, REPLY_MEASURES

pytestmark = pytest.mark.e2e


def test_smoke_run_measures_both_workers(artifacts_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    log = artifacts_dir / "bench-smoke.log"
    with log.open("wb") as f:
        done = subprocess.run(
            [sys.executable, "-m", "convoi.devstack.bench", "--smoke", "--json", str(out)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, log.read_text()[-4000:]
    result = json.loads(out.read_text())
    (block,) = result["sequential"]
    assert block["callers"] == "plain"  # smoke runs the plain callers only
    (cut_ins,) = block["rates"]
    assert cut_ins["key"] == "cut_in"
    for side in ("ours", "stock"):  # a plain turn has no pause to cut into
        assert cut_ins[side] == {"count": 0, "n": 1, "rate": 0.0}, side
    assert {r["callers"] for r in result["calls"]} == {"plain"}
    expected = {key for key, _ in JOIN_MEASURES + REPLY_MEASURES}
    assert {row["key"] for row in block["table"]} == expected
    for row in [*block["table"], *result["memory_table"]]:
        for side in ("ours", "stock"):
            summary = row[side]
            assert summary is not None, f"{side} has no {row['key']}"
            assert math.isfinite(summary["p50"]) and summary["n"] >= 1
        stock_p50, ours_p50 = row["stock"]["p50"], row["ours"]["p50"]
        if stock_p50 > 0:
            assert row["ratio"] == pytest.approx(ours_p50 / stock_p50), row["key"]
        else:  # a preemptive request ahead of the decision, or a hook that took no time
            assert row["ratio"] is None
    assert {row["key"] for row in result["memory_table"]} == {k for k, _ in MEMORY_MEASURES}
    for key in ("join", "greeting", "reply"):
        assert next(r for r in block["table"] if r["key"] == key)["ratio"] is not None
    sweep = {row["side"]: row for row in result["sweep"]}
    assert set(sweep) == {"ours", "stock"}
    for row in sweep.values():
        assert row["n"] == 1 and row["failed"] == 0
        assert row["cpu_s_per_call_min"] > 0 and row["job_pss"] > 0
