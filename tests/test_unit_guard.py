"""The unit-mode guard (``tests/unit_guard.py``): which commands count as starting a server, and
that an active guard refuses them through every way tests start processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests import conftest
from tests.unit_guard import ServerRefused, guard, refused

PY = sys.executable


@pytest.mark.parametrize(
    ("args", "shell", "server"),
    [
        (["/work/.cache/devstack/bin/livekit-server", "--dev"], False, "livekit-server"),
        (["redis-server", "--port", "0"], False, "redis-server"),
        ("/usr/lib/postgresql/15/bin/postgres", False, "postgres"),
        (["bash", "scripts/postgres", "start"], False, "postgres"),
        (["runuser", "-u", "postgres", "--", "/usr/bin/initdb", "-D", "x"], False, "postgres"),
        (["env", "A=1", "livekit-server"], False, "livekit-server"),
        (["sh", "-c", "exec redis-server --port 1"], False, "redis-server"),
        ("echo hi && redis-server --port 1", True, "redis-server"),
        (["/usr/bin/chromium", "--headless"], False, "chromium"),
        ([PY, "-m", "convoi.worker.cli", "start"], False, "python -m convoi.worker.cli start"),
        (
            [PY, "-m", "convoi.devstack.emulators", "--port", "0"],
            False,
            "python -m convoi.devstack.emulators",
        ),
        ([PY, "-m", "convoi.receiver", "--port", "0"], False, "python -m convoi.receiver"),
        (
            [PY, "-m", "convoi.controlplane.cli", "serve"],
            False,
            "python -m convoi.controlplane.cli serve",
        ),
        (["convoi-devstack", "up", "--no-emulators"], False, "convoi-devstack up"),
        (["/work/main/.venv/bin/convoi-worker", "start"], False, "convoi-worker start"),
        ([PY, "-m", "convoi.worker.cli", "check-config"], False, None),
        (["convoi-worker", "check-call", "call.json"], False, None),
        ([PY, "-m", "convoi.devstack.cli", "install"], False, None),
        ([PY, "-m", "convoi.reporting.delivery", "--flush"], False, None),
        ([PY, "-c", "import convoi.receiver"], False, None),
        ([PY, "script.py"], False, None),
        (["git", "status"], False, None),
        ("grep -r postgres docs", True, None),
    ],
)
def test_what_counts_as_starting_a_server(args: object, shell: bool, server: str | None) -> None:
    assert refused(args, shell) == server


def test_an_active_guard_refuses_every_way_of_starting_a_process() -> None:
    violations: list[str] = []
    original = subprocess.Popen.__init__
    with guard(violations):
        with pytest.raises(ServerRefused, match="redis-server"):
            subprocess.run(["redis-server", "--port", "0"], check=False)
        with pytest.raises(ServerRefused, match="livekit-server"):
            subprocess.Popen(["livekit-server", "--dev"])
        with pytest.raises(ServerRefused, match=r"convoi\.receiver"):
            asyncio.run(asyncio.create_subprocess_exec(PY, "-m", "convoi.receiver"))
        with pytest.raises(ServerRefused, match="redis-server"):
            subprocess.run("redis-server --port 0", shell=True, check=False)
        assert subprocess.run([PY, "-c", "print('ok')"], capture_output=True, text=True).stdout == "ok\n"  # fmt: skip
    assert len(violations) == 4
    assert all(v.startswith("CONVOI_UNIT_ONLY=1: a unit test tried to start ") for v in violations)
    assert subprocess.Popen.__init__ is original  # restored on exit


@pytest.mark.skipif(not conftest.UNIT_ONLY, reason="only `scripts/test --unit` guards the session")
def test_the_session_is_guarded_in_unit_mode() -> None:
    with pytest.raises(ServerRefused):
        subprocess.run(["livekit-server", "--dev"], check=False)
    # the refusal is also recorded, to fail the test even if the code under test swallowed it:
    # take it back, this test wanted it
    assert "livekit-server" in conftest._violations.pop()
