"""``convoi-worker start`` as an operator runs it: failures are loud and exit non-zero.

Each test runs the worker's ``start`` command as a subprocess (nothing answers it), hence ``server``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.server

WORKER = [sys.executable, "-m", "convoi.worker.cli"]


def test_unreachable_livekit_logs_a_clear_error_and_exits_non_zero() -> None:
    env = {
        **os.environ,
        "LIVEKIT_URL": f"ws://127.0.0.1:{free_port()}",
        "CONVOI_MAX_RETRY": "1",
        "CONVOI_HEALTH_PORT": "0",
        "OPENAI_API_KEY": "sk-test-secret-value",
    }
    proc = subprocess.run([*WORKER, "start"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1
    assert "could not connect to LiveKit at ws://127.0.0.1:" in proc.stderr
    assert "LIVEKIT_URL" in proc.stderr
    assert "failed to connect to livekit" in proc.stdout  # livekit-agents' own JSON log lines
    assert "sk-test-secret-value" not in proc.stdout + proc.stderr


def test_start_refuses_invalid_definitions(tmp_path: Path) -> None:
    config = tmp_path / "agents_config"
    shutil.copytree("agents_config", config)
    path = config / "agents" / "support.yaml"
    path.write_text(path.read_text().replace("temperature: 0.3", "temperature: 7"))
    env = {**os.environ, "CONVOI_CONFIG_DIR": str(config), "LIVEKIT_URL": "ws://127.0.0.1:9"}
    proc = subprocess.run([*WORKER, "start"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "agents_config/agents/support.yaml: llm.temperature:" in proc.stderr
