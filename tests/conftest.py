"""Shared pytest fixtures (keep small; add yours below)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoi.devstack.harness import EmulatorsProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[LiveKitServer]:
    """A livekit-server on ws://127.0.0.1:7880 (devkey/secret).

    Reuses one already answering there (e.g. from `convoi-devstack up`), else starts one for the
    session (building the pinned binary first if needed) and stops it at the end.
    """
    with LiveKitServer() as server:
        yield server


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where end-to-end tests keep logs, recordings and reports (git-ignored, kept by CI)."""
    path = Path(os.environ.get("CONVOI_ARTIFACTS_DIR", "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def emulators(artifacts_dir: Path) -> Iterator[EmulatorsProcess]:
    """The provider emulators as a separate process on a free port."""
    proc = EmulatorsProcess(artifacts_dir / "emulators.log").start_and_wait()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def worker(
    livekit_server: LiveKitServer, emulators: EmulatorsProcess, artifacts_dir: Path
) -> Iterator[WorkerProcess]:
    """``convoi-worker start`` registered as ``convoi-e2e``, its providers the emulators."""
    env = {
        "LIVEKIT_URL": livekit_server.url,
        "LIVEKIT_API_KEY": livekit_server.api_key,
        "LIVEKIT_API_SECRET": livekit_server.api_secret,
        "CONVOI_NUM_IDLE_PROCESSES": "1",
        **emulators.provider_env(),
    }
    proc = WorkerProcess(artifacts_dir / "worker.log", env, agent_name="convoi-e2e")
    proc.start_and_wait()
    yield proc
    proc.stop(timeout=30)
