"""Shared pytest fixtures (keep small; add yours below)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoi.definitions.loader import load_definitions
from convoi.definitions.models import Definitions
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer
from convoi.devstack.sip_stack import SipStack
from tests.helpers import AGENTS_CONFIG
from tests.unit_guard import UNIT_ONLY_ENV, guard

UNIT_ONLY = os.environ.get(UNIT_ONLY_ENV) == "1"
"""``scripts/test --unit``: no test may start (or reuse) a server, see ``tests/unit_guard.py``."""

_violations: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _no_servers_in_unit_mode() -> Iterator[None]:
    """In unit mode, ``subprocess.Popen`` refuses livekit-server, Redis, PostgreSQL, the worker…"""
    if not UNIT_ONLY:
        yield
        return
    with guard(_violations):
        yield


@pytest.fixture(autouse=True)
def _fail_on_refused_server() -> Iterator[None]:
    """A refused server start fails its test, even when the code under test caught the error."""
    before = len(_violations)
    yield
    if len(_violations) > before:
        pytest.fail("\n".join(_violations[before:]), pytrace=False)


SERVER_FIXTURES = frozenset({"livekit_server", "sip_stack", "emulators", "receiver", "worker"})
"""The fixtures below that start (or reuse) a server: a test using one must be marked."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a test that uses a server fixture of this file without ``e2e``/``server``;
    mark the tests on the SIP stack ``sip`` (``scripts/test`` runs them beside the others)."""
    _mark_the_sip_group(items)
    unmarked = []
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("e2e") or item.get_closest_marker("server"):
            continue
        for name in sorted(SERVER_FIXTURES.intersection(item.fixturenames)):
            fixturedefs = info.name2fixturedefs.get(name) or ()
            if fixturedefs and fixturedefs[-1].baseid == "tests":  # ours, not a module's own
                unmarked.append(f"{item.nodeid} (uses the {name} fixture)")
    if unmarked:
        raise pytest.UsageError(
            "tests that start a server must be marked `e2e` or `server`:\n  "
            + "\n  ".join(unmarked)
        )


def _mark_the_sip_group(items: list[pytest.Item]) -> None:
    """Tests on the SIP stack (its own livekit-server on 7900, livekit-sip, SIPp on 5080) share no
    port with the others (the web livekit-server on 7880): ``scripts/test`` runs the two groups
    at once. A test using both stacks would make the groups collide, so it is refused."""
    both = []
    for item in items:
        if "sip_stack" in item.fixturenames:
            item.add_marker(pytest.mark.sip)
            if "livekit_server" in item.fixturenames:
                both.append(item.nodeid)
    if both:
        raise pytest.UsageError(
            "a test may use the SIP stack or the web livekit-server, not both (the two groups run "
            "in parallel):\n  " + "\n  ".join(both)
        )


def _refuse_in_unit_mode(what: str) -> None:
    if UNIT_ONLY:
        pytest.fail(
            f"{UNIT_ONLY_ENV}=1: a unit test asked for {what}; mark it `e2e` or `server`",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def defs() -> Definitions:
    """The shipped definitions (``agents_config/``), loaded once per module."""
    return load_definitions(AGENTS_CONFIG).definitions


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[LiveKitServer]:
    """A livekit-server on ws://127.0.0.1:7880 (devkey/secret).

    Reuses one already answering there (e.g. from `convoi-devstack up`), else starts one for the
    session (building the pinned binary first if needed) and stops it at the end.
    """
    _refuse_in_unit_mode("a livekit-server")
    with LiveKitServer() as server:
        yield server


@pytest.fixture(scope="session")
def sip_stack(artifacts_dir: Path) -> Iterator[SipStack]:
    """The real SIP bridge for the session: Redis + livekit-server (ws://127.0.0.1:7900) +
    livekit-sip (SIP 127.0.0.1:5070, RTP 20000-20100), logs in ``artifacts/sip-stack/``.

    Builds livekit-sip on first use (minutes; cached). Never reuses: a port in use fails clearly.
    Outbound trunks point at the callee (SIPp), not at ``sip_stack.sip_address``.
    """
    _refuse_in_unit_mode("the SIP stack (Redis, livekit-server, livekit-sip)")
    with SipStack(workdir=artifacts_dir / "sip-stack") as stack:
        yield stack


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
    _refuse_in_unit_mode("the emulators process")
    proc = EmulatorsProcess(artifacts_dir / "emulators.log").start_and_wait()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def receiver(artifacts_dir: Path) -> Iterator[ReceiverProcess]:
    """The reference event receiver the e2e worker reports to."""
    _refuse_in_unit_mode("the receiver process")
    db = artifacts_dir / "receiver.sqlite3"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)  # a WAL left by a killed run would fail the new database
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
        "CONVOI_MAX_IDLE_PROCESSES": "2",  # the warm pool may grow, a little, on a busy machine
        # scripted conversations on a busy machine: turns end on silence alone, so a test's
        # turns never merge; the default end-of-turn model runs in tests/test_bench.py's calls
        "CONVOI_TURN_DETECTION": "vad",
        "CONVOI_LOAD_THRESHOLD": "inf",  # one worker on a busy 2-core machine: never refuse
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
