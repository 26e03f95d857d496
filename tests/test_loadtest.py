"""The Calls API load test's command line (``python -m convoi.devstack.loadtest``).

- the LiveKit it uses by default: the real livekit-server once it is built, else the fake (said);
- a small run end to end against a real livekit-server of its own (skipped when not built): every
  call created (room and dispatch on that server), replayed and read, the LiveKit named, then
  each kind's cost with its requests sent one at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from convoi.devstack import install
from convoi.devstack.loadtest import RunOptions, _options, default_livekit, main
from tests.helpers import AGENTS_CONFIG


def test_the_default_livekit_is_real_once_livekit_server_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVOI_CACHE_DIR", str(tmp_path / "cache"))
    assert default_livekit() == "fake"
    options = _options([])[0]
    assert options.livekit == "fake" and "not built" in capsys.readouterr().err
    binary = install.binary_path("livekit-server")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert default_livekit() == "real"
    assert _options([])[0].livekit == "real" and capsys.readouterr().err == ""
    assert _options(["--livekit", "fake"])[0] == RunOptions(livekit="fake")


@pytest.mark.server
@pytest.mark.skipif(
    not install.is_installed("livekit-server"),
    reason="livekit-server is not built (convoi-devstack install)",
)
def test_a_small_load_run_against_a_real_livekit_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--livekit", "real", "--clients", "6", "--drivers", "2", "--alone", "3"]
    code = main([*argv, "--config-dir", str(AGENTS_CONFIG)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "LiveKit: livekit-server v" in out and ":7960" in out
    assert "| SQLite, 1 | create | 6 |" in out and "| 201×6 |" in out
    assert "| SQLite, 1 | get | 6 |" in out and "| 200×6 |" in out
    assert "5xx or unanswered: 0" in out
    for kind, status in (("create", 201), ("replay", 201), ("get", 200)):  # each kind alone
        assert f"one at a time, {kind}: API CPU " in out and f"(3: {status}×3)" in out
