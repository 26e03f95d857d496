"""Shared pytest fixtures (keep small; add yours below)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[LiveKitServer]:
    """A livekit-server on ws://127.0.0.1:7880 (devkey/secret).

    Reuses one already answering there (e.g. from `convoi-devstack up`), else starts one for the
    session (building the pinned binary first if needed) and stops it at the end.
    """
    with LiveKitServer() as server:
        yield server


E2E_EVENTS_SECRET = "e2e-events-secret-0123456789abcdef"


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
def receiver(artifacts_dir: Path) -> Iterator[ReceiverProcess]:
    """The reference event receiver the e2e worker reports to."""
    db = artifacts_dir / "receiver.sqlite3"
    db.unlink(missing_ok=True)
    proc = ReceiverProcess(artifacts_dir / "receiver.log", db, secret=E2E_EVENTS_SECRET)
    proc.start_and_wait()
    yield proc
    proc.stop()


def worker_env(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    outbox: Path,
) -> dict[str, str]:
    """Everything an e2e worker needs: LiveKit, the emulated providers, the receiver, an outbox."""
    return {
        "LIVEKIT_URL": livekit_server.url,
        "LIVEKIT_API_KEY": livekit_server.api_key,
        "LIVEKIT_API_SECRET": livekit_server.api_secret,
        "CONVOI_NUM_IDLE_PROCESSES": "1",
        "CONVOI_LOAD_THRESHOLD": "inf",  # one worker on a busy 2-core machine: never refuse
        "CONVOI_DIAL_MODE": "participant",  # livekit-sip cannot run here: the caller is the phone
        "CONVOI_OUTBOX_PATH": str(outbox),
        "CONVOI_PROGRESS_INTERVAL": "1",
        "CONVOI_DELIVERY_BACKOFF_INITIAL": "0.2",
        "CONVOI_DELIVERY_BACKOFF_MAX": "2",
        **emulators.provider_env(),
        **receiver.worker_env(),
    }


@pytest.fixture(scope="session")
def worker(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
) -> Iterator[WorkerProcess]:
    """``convoi-worker start`` registered as ``convoi-e2e``: providers emulated, events to the
    reference receiver."""
    outbox = artifacts_dir / "outbox.sqlite3"
    outbox.unlink(missing_ok=True)
    env = worker_env(livekit_server, emulators, receiver, outbox)
    proc = WorkerProcess(artifacts_dir / "worker.log", env, agent_name="convoi-e2e")
    proc.start_and_wait()
    yield proc
    proc.stop(timeout=30)
