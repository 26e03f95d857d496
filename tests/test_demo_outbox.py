"""The demo's worker keeps its events in the run's own outbox and sends them nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from convoi.devstack.demo import worker_env
from convoi.devstack.livekit_server import LiveKitServer
from convoi.reporting.delivery import DeliverySettings


def test_the_demo_worker_uses_the_runs_outbox_even_with_a_control_plane_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "CONVOI_API_URL=http://127.0.0.1:8000\nCONVOI_EVENTS_SECRET=from-dotenv\n"
    )
    monkeypatch.setenv("CONVOI_API_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("CONVOI_EVENTS_SECRET", "from-environment")
    assert DeliverySettings().configured  # what a worker outside the demo would do

    workdir = tmp_path / "demo-run"
    env = worker_env(LiveKitServer(workdir=workdir / "livekit"), workdir)  # nothing started
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = DeliverySettings()
    assert not settings.configured
    assert settings.outbox_path == workdir / "outbox.sqlite3"
    assert settings.outbox_path != DeliverySettings.model_fields["outbox_path"].default
