"""Worker metrics: the recording functions, multiprocess aggregation, the AgentServer endpoint."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from convoi.worker import metrics
from convoi.worker.metrics import MetricsSettings, metrics_server_options

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _aggregate(folder: Path) -> Samples:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return _samples(generate_latest(registry).decode())


def _run(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture
def single_process() -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        pytest.skip("this test reads the in-process registry")


def test_the_functions_update_the_registry(single_process: None) -> None:
    before = _samples(generate_latest(REGISTRY).decode())
    metrics.call_started()
    during = _samples(generate_latest(REGISTRY).decode())
    metrics.observe_greeting_latency(0.4)
    metrics.observe_turn_latency(0.8)
    metrics.observe_turn_latency(1.7)
    metrics.observe_turn_latency(None)  # a turn without e2e_latency is skipped
    metrics.call_ended("completed", "customer_hangup", cost=Decimal("0.0123"), handoffs=2)
    metrics.call_ended("failed", "invalid_request", cost=Decimal(0))  # rejected: never started
    after = _samples(generate_latest(REGISTRY).decode())

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert _value(during, "convoi_active_calls") - _value(before, "convoi_active_calls") == 1
    assert delta("convoi_active_calls") == 0  # the rejected call did not take it below zero
    assert delta("convoi_calls_total", status="completed", reason="customer_hangup") == 1
    assert delta("convoi_calls_total", status="failed", reason="invalid_request") == 1
    assert delta("convoi_handoffs_total") == 2
    assert delta("convoi_call_cost_usd_total") == pytest.approx(0.0123)
    assert delta("convoi_voice_to_voice_latency_seconds_count") == 2
    assert delta("convoi_voice_to_voice_latency_seconds_sum") == pytest.approx(2.5)
    assert delta("convoi_voice_to_voice_latency_seconds_bucket", le="1.0") == 1
    assert delta("convoi_voice_to_voice_latency_seconds_bucket", le="2.0") == 2
    assert delta("convoi_greeting_latency_seconds_count") == 1
    assert delta("convoi_greeting_latency_seconds_bucket", le="0.5") == 1


def test_bad_values_never_raise(
    single_process: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="convoi.worker.metrics")
    before = _samples(generate_latest(REGISTRY).decode())
    metrics.observe_turn_latency(float("nan"))
    metrics.observe_greeting_latency(-1.0)
    metrics.call_ended("completed", None, cost=Decimal("-1"))  # logged, not counted
    after = _samples(generate_latest(REGISTRY).decode())

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("convoi_voice_to_voice_latency_seconds_count") == 0  # NaN skipped
    assert delta("convoi_greeting_latency_seconds_count") == 0  # negative skipped
    assert delta("convoi_call_cost_usd_total") == 0  # a negative cost is not counted...
    assert "negative call cost -1 not counted" in caplog.text  # ...but logged
    assert delta("convoi_calls_total", status="completed", reason="none") == 1  # the call counts

    # a broken metrics backend is logged, never raised into the call
    def broken() -> None:
        raise RuntimeError("registry exploded")

    monkeypatch.setattr(metrics, "_get", broken)
    caplog.clear()
    metrics.call_started()
    metrics.observe_turn_latency(0.5)
    metrics.observe_greeting_latency(0.5)
    metrics.call_ended("completed", "customer_hangup", cost=Decimal("0.1"), handoffs=1)
    assert [r.getMessage() for r in caplog.records] == [
        "could not record call_started metric",
        "could not record voice_to_voice latency metric",
        "could not record greeting latency metric",
        "could not record call_ended metrics",
    ]
    assert all(r.exc_info and "registry exploded" in str(r.exc_info[1]) for r in caplog.records)


_CALL = """
    import sys
    from decimal import Decimal
    from convoi.worker import metrics
    metrics.call_started()
    metrics.observe_greeting_latency(float(sys.argv[1]))
    metrics.observe_turn_latency(float(sys.argv[2]))
    if sys.argv[3] == "end":
        metrics.call_ended("completed", "customer_hangup", cost=Decimal(sys.argv[4]), handoffs=1)
    elif sys.argv[3] == "crash":
        import os; os._exit(0)   # dies mid-call: cannot take itself off convoi_active_calls
    else:
        print("ready", flush=True); sys.stdin.read()   # stays in the call until stdin closes
"""


def test_samples_from_several_processes_add_up(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    _run(_CALL, env, "0.3", "0.9", "end", "0.10")
    _run(_CALL, env, "0.6", "1.1", "end", "0.25")
    _run(_CALL, env, "0.2", "0.7", "crash", "0")
    assert _value(_aggregate(tmp_path), "convoi_active_calls") == 1  # the crashed call, stale

    ongoing = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CALL), "0.5", "0.5", "stay", "0"],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ongoing.stdout is not None and ongoing.stdout.readline().strip() == "ready"
        samples = _aggregate(tmp_path)
        # the new call's call_started removed the dead process's live gauge: only it counts
        assert _value(samples, "convoi_active_calls") == 1
        assert metrics.forget_dead_processes(tmp_path) == []
    finally:
        ongoing.communicate("", timeout=30)
    assert metrics.forget_dead_processes(tmp_path) == [ongoing.pid]
    assert _value(_aggregate(tmp_path), "convoi_active_calls") == 0

    status = {"status": "completed", "reason": "customer_hangup"}
    assert _value(samples, "convoi_calls_total", **status) == 2
    assert _value(samples, "convoi_handoffs_total") == 2
    assert _value(samples, "convoi_call_cost_usd_total") == pytest.approx(0.35)
    assert _value(samples, "convoi_greeting_latency_seconds_count") == 4
    assert _value(samples, "convoi_voice_to_voice_latency_seconds_count") == 4
    assert _value(samples, "convoi_voice_to_voice_latency_seconds_sum") == pytest.approx(3.2)
    assert _value(samples, "convoi_voice_to_voice_latency_seconds_bucket", le="1.0") == 3


def test_no_port_means_no_endpoint() -> None:
    assert metrics_server_options(MetricsSettings(CONVOI_METRICS_PORT=None)) == {}


_ENDPOINT = """
    import asyncio, json, multiprocessing, sys, urllib.request
    from pathlib import Path
    from livekit.agents import telemetry          # imports prometheus_client before any setting
    from convoi.worker.metrics import MetricsSettings, metrics_server_options

    def job() -> None:                           # a job process: inherits the environment
        from decimal import Decimal
        from convoi.worker import metrics
        metrics.call_started()
        metrics.call_ended("completed", "agent_hangup", cost=Decimal("0.5"))

    async def main() -> None:
        options = metrics_server_options(MetricsSettings(CONVOI_METRICS_PORT=0,
                                                         CONVOI_METRICS_DIR=sys.argv[1]))
        telemetry.metrics.job_started()          # livekit-agents' own main-process metric
        proc = multiprocessing.get_context("spawn").Process(target=job)
        proc.start(); proc.join()
        server = telemetry.http_server.HttpServer("127.0.0.1", options["prometheus_port"])
        await server.start()                      # the server AgentServer runs for prometheus_port
        url = f"http://127.0.0.1:{server.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        await server.aclose()
        print(json.dumps({"options": options, "body": body.decode()}))

    if __name__ == "__main__":
        asyncio.run(main())
"""


def test_the_agent_server_endpoint_serves_job_process_metrics(tmp_path: Path) -> None:
    script = tmp_path / "endpoint.py"
    script.write_text(textwrap.dedent(_ENDPOINT))
    folder = tmp_path / "metrics"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.run(
        [sys.executable, str(script), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["options"] == {"prometheus_port": 0, "prometheus_multiproc_dir": str(folder)}
    samples = _samples(out["body"])
    status = {"status": "completed", "reason": "agent_hangup"}
    assert _value(samples, "convoi_calls_total", **status) == 1
    assert _value(samples, "convoi_call_cost_usd_total") == 0.5
    assert _value(samples, "convoi_active_calls") == 0
    assert any(name == "lk_agents_active_job_count" and v == 1 for (name, _), v in samples.items())
