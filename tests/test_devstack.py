"""Devstack: pinned install, the loopback livekit-server and the CLI.

The e2e test is the critical risk check: two Python rtc participants exchange real audio through
a real livekit-server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from livekit import api, rtc
from livekit.rtc._proto import stats_pb2

from convoi.devstack import cli, install
from convoi.devstack.emulators.__main__ import _parse_args as emulators_args
from convoi.devstack.emulators.scenario import load_scenario
from convoi.devstack.livekit_server import LiveKitServer
from convoi.devstack.state import Component, State, pid_alive, wait_until
from tests.helpers import free_port

SAMPLE_RATE = 48000
FRAME_MS = 10

# --------------------------------------------------------------------------- helpers


def _token(server: LiveKitServer, room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return (
        api.AccessToken(server.api_key, server.api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .to_jwt()
    )


def _tone_frame(i: int, freq: float = 440.0, amplitude: int = 8000) -> rtc.AudioFrame:
    n = SAMPLE_RATE * FRAME_MS // 1000
    t = (np.arange(n) + i * n) / SAMPLE_RATE
    samples = (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)
    return rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, n)


def _rms(frame: rtc.AudioFrame) -> float:
    s = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(s**2))) if s.size else 0.0


def _describe(c: stats_pb2.IceCandidateStats | None, cid: str) -> str:
    if c is None:
        return cid
    kind = stats_pb2.IceCandidateType.Name(c.candidate_type)
    return f"{c.address}:{c.port}/{c.protocol} {kind}"


async def _selected_candidates(room: rtc.Room) -> list[dict[str, object]]:
    """The succeeded ICE candidate pairs of ``room`` (local/remote address, protocol, type)."""
    st = await room.get_rtc_stats()
    pairs: list[dict[str, object]] = []
    for side, stats in (("publisher", st.publisher_stats), ("subscriber", st.subscriber_stats)):
        cands: dict[str, stats_pb2.IceCandidateStats] = {}
        for s in stats:
            kind = s.WhichOneof("stats")
            if kind == "local_candidate":
                cands[s.local_candidate.rtc.id] = s.local_candidate.candidate
            elif kind == "remote_candidate":
                cands[s.remote_candidate.rtc.id] = s.remote_candidate.candidate
        for s in stats:
            if s.WhichOneof("stats") != "candidate_pair":
                continue
            cp = s.candidate_pair.candidate_pair
            if cp.state != stats_pb2.PAIR_SUCCEEDED:
                continue
            pairs.append(
                {
                    "pc": side,
                    "local": _describe(cands.get(cp.local_candidate_id), cp.local_candidate_id),
                    "remote": _describe(cands.get(cp.remote_candidate_id), cp.remote_candidate_id),
                    "nominated": cp.nominated,
                    "bytes_received": cp.bytes_received,
                }
            )
    return pairs


def _fake_go(bindir: Path, body: str) -> Path:
    """A `go` stand-in: answers `go env GOVERSION`, runs ``body`` for anything else."""
    bindir.mkdir(parents=True, exist_ok=True)
    go = bindir / "go"
    go.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$FAKE_GO_CALLS"\n'
        'if [ "$1" = env ]; then echo go1.26.0; exit 0; fi\n' + body
    )
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    return go


# --------------------------------------------------------------------------- e2e: audio


@pytest.mark.e2e
async def test_two_participants_exchange_audio_on_loopback(
    livekit_server: LiveKitServer,
) -> None:
    room_name = f"devstack-{uuid.uuid4().hex[:8]}"
    pub, sub = rtc.Room(), rtc.Room()
    subscribed: asyncio.Future[rtc.RemoteAudioTrack] = asyncio.get_running_loop().create_future()

    @sub.on("track_subscribed")
    def _on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, _p: object) -> None:
        if isinstance(track, rtc.RemoteAudioTrack) and not subscribed.done():
            subscribed.set_result(track)

    source = rtc.AudioSource(SAMPLE_RATE, 1)
    stop_tone = asyncio.Event()

    async def push_tone() -> None:
        i = 0
        while not stop_tone.is_set():
            await source.capture_frame(_tone_frame(i))
            i += 1

    pusher: asyncio.Task[None] | None = None
    stream: rtc.AudioStream | None = None
    try:
        await sub.connect(livekit_server.url, _token(livekit_server, room_name, "listener"))
        await pub.connect(livekit_server.url, _token(livekit_server, room_name, "speaker"))
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await pub.local_participant.publish_track(track, opts)
        pusher = asyncio.create_task(push_tone())

        remote = await asyncio.wait_for(subscribed, timeout=20)
        stream = rtc.AudioStream(remote, sample_rate=SAMPLE_RATE, num_channels=1)
        loud = total = 0
        async with asyncio.timeout(20):
            async for ev in stream:
                total += 1
                if _rms(ev.frame) > 1000:  # tone RMS is ~5600; silence is 0
                    loud += 1
                if loud >= 50:  # 0.5 s of real audio
                    break
        assert loud >= 50, f"only {loud}/{total} non-silent frames"

        pairs = await _selected_candidates(sub) + await _selected_candidates(pub)
        print("selected ICE pairs:", json.dumps(pairs, indent=1))
        assert pairs, "no succeeded ICE candidate pair"
        assert all(str(p["remote"]).startswith("127.0.0.1:") for p in pairs), pairs
    finally:
        stop_tone.set()
        if pusher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(pusher, 5)
        if stream is not None:
            await stream.aclose()
        await pub.disconnect()
        await sub.disconnect()
        await source.aclose()


# --------------------------------------------------------------------------- install


def test_install_is_idempotent_without_invoking_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVOI_CACHE_DIR", str(tmp_path / "cache"))
    calls = tmp_path / "go-calls"
    monkeypatch.setenv("FAKE_GO_CALLS", str(calls))
    _fake_go(tmp_path / "bin", "exit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    binary = install.binary_path("livekit-server")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)

    started = time.monotonic()
    for _ in range(2):
        assert install.ensure("livekit-server") == binary
    assert time.monotonic() - started < 0.5
    assert not calls.exists(), "go must not run when the pinned binary is cached"


def test_install_builds_atomically_and_retries_without_sumdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONVOI_CACHE_DIR", str(cache))
    calls = tmp_path / "go-calls"
    monkeypatch.setenv("FAKE_GO_CALLS", str(calls))
    _fake_go(
        tmp_path / "bin",
        'if [ "$GOSUMDB" != off ]; then\n'
        '  echo \'verifying github.com/x/y@v1.0.0: Get "https://sum.golang.org/lookup/x": '
        "dial tcp: connection refused'; exit 1\n"
        "fi\n"
        "printf '#!/bin/sh\\necho fake\\n' > \"$GOBIN/server\"\n"
        'echo "CGO=$CGO_ENABLED MODCACHE=$GOMODCACHE" >> "$FAKE_GO_CALLS"\n',
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))

    messages: list[str] = []
    path = install.ensure("livekit-server", progress=messages.append)

    assert path == cache / "bin" / "livekit-server-v1.13.5" / "livekit-server"
    assert path.is_file() and os.access(path, os.X_OK)
    assert json.loads((path.parent / "BUILD.json").read_text())["version"] == "v1.13.5"
    assert sorted(p.name for p in (cache / "bin").iterdir()) == ["livekit-server-v1.13.5"]
    log = calls.read_text()
    assert log.count("install github.com/livekit/livekit-server/cmd/server@v1.13.5") == 2
    assert f"CGO=0 MODCACHE={cache}/go/pkg/mod" in log
    assert any("GOSUMDB=off" in m for m in messages)


def test_install_failure_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVOI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_GO_CALLS", str(tmp_path / "go-calls"))
    _fake_go(tmp_path / "bin", "echo 'pkg/foo.go:1: undefined: bar'; exit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))

    with pytest.raises(install.BuildFailed, match=r"undefined: bar") as err:
        install.ensure("lk", progress=lambda _m: None)
    assert "Go >= " in str(err.value)
    assert not install.is_installed("lk")
    assert [p.name for p in (tmp_path / "cache" / "bin").iterdir()] == []


def test_missing_go_gives_clear_message_without_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "CONVOI_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "convoi.devstack.cli", "install"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Go >= 1.26 is required to build livekit-server v1.13.5" in proc.stderr
    assert "https://go.dev/dl" in proc.stderr and "go: not found" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- CLI: up's scenario


def test_up_starts_the_emulators_with_the_default_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a script the emulators transcribe the caller as "" and nobody answers: ``up``
    gives them one (the README walkthrough's caller then hears a reply)."""
    monkeypatch.setenv("CONVOI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(cli.install, "ensure", lambda *a, **kw: None)
    server = Component(name=cli.SERVER, pid=None, owned=False)
    monkeypatch.setattr(cli, "_start_server", lambda cfg, timeout: server)
    started: list[Path | None] = []

    def start_emulators(port: int, timeout: float, scenario: Path | None) -> Component:
        started.append(scenario)
        return Component(name=cli.EMULATORS, pid=None, owned=False, ports={"http": port})

    monkeypatch.setattr(cli, "_start_emulators", start_emulators)
    assert cli.main(["up"]) == 0
    assert started == [cli.DEFAULT_SCENARIO]
    assert "export OPENAI_BASE_URL=http://127.0.0.1:18500/openai/v1" in capsys.readouterr().out
    State.clear()

    assert cli.main(["up", "--scenario", str(tmp_path / "mine.yaml")]) == 0
    assert started[-1] == tmp_path / "mine.yaml"

    default = load_scenario(cli.DEFAULT_SCENARIO)
    assert default.caller and default.caller_repeat and default.llm
    cmd = cli.emulators_command(18500, cli.DEFAULT_SCENARIO, tmp_path / "records.jsonl")
    assert cmd[:3] == [sys.executable, "-m", cli.EMULATORS_MODULE]
    parsed = emulators_args(cmd[3:])  # what the emulators process will read
    assert (parsed.port, parsed.scenario) == (18500, cli.DEFAULT_SCENARIO)
    assert "--scenario" not in cli.emulators_command(18500, None, tmp_path / "r.jsonl")


# --------------------------------------------------------------------------- CLI round trip


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convoi.devstack.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.e2e
def test_cli_up_status_down_round_trip(tmp_path: Path) -> None:
    install.ensure("livekit-server")  # may build once (minutes) on a fresh machine
    port, tcp, udp = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    env = {**os.environ, "CONVOI_STATE_DIR": str(tmp_path / "state")}
    ports = ["--port", str(port), "--rtc-tcp-port", str(tcp), "--rtc-udp-port", str(udp)]

    up = _cli("up", "--no-emulators", *ports, env=env)
    assert up.returncode == 0, up.stderr
    assert f"export LIVEKIT_URL=ws://127.0.0.1:{port}" in up.stdout
    assert "export LIVEKIT_API_KEY=devkey" in up.stdout
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    pid = state["components"]["livekit-server"]["pid"]
    try:
        # the CLI has exited; the server it started lives on in its own session
        assert pid_alive(pid)
        assert os.getsid(pid) == pid
        status = _cli("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "livekit-server" in status.stdout and " up " in status.stdout

        again = _cli("up", "--no-emulators", *ports, env=env)
        assert again.returncode == 0 and "already up" in again.stderr

        logs = _cli("logs", "livekit-server", "-n", "5", env=env)
        assert logs.returncode == 0 and logs.stdout.strip()

        down = _cli("down", env=env)
        assert down.returncode == 0, down.stderr
        assert wait_until(lambda: not pid_alive(pid), 15)
    finally:
        if pid_alive(pid):
            os.killpg(pid, 9)
    status = _cli("status", "--port", str(port), env=env)
    assert status.returncode == 1 and "down" in status.stdout
    assert not (tmp_path / "state" / "state.json").exists()
