"""The real SIP bridge: livekit-sip's vendored build, ``up --sip`` and :class:`SipStack`.

- unit: the vendor folder, ``SHA256SUMS`` checks, the go command lines of the fallback build (a
  fake ``go`` on PATH, no network, no build), the configs written, ``up --sip``'s env;
- ``slow``: the real build from ``../shared/vendor/livekit-sip`` into a fresh cache (5-6 min);
- ``server``: a :class:`SipStack` (Redis + livekit-server + livekit-sip on loopback) and two real
  calls placed by our dialer to SIPp: ``sipp -sn uas`` answers, a 486 scenario is busy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from livekit import api
from livekit.protocol.models import ParticipantInfo

from convoi.definitions.models import PhoneNumber
from convoi.devstack import cli, install
from convoi.devstack.livekit_server import ServerConfig, render_config
from convoi.devstack.sip_stack import (
    DEVSTACK_PORTS,
    SERVICE_READY,
    TEST_PORTS,
    BridgeConfig,
    SipPorts,
    SipStack,
    port_free,
    render_bridge_config,
)
from convoi.devstack.state import Component, State, _same_program, pid_alive, wait_until
from convoi.telephony import phone_identity
from convoi.telephony.dialer import DialResult, dial, hang_up
from tests.helpers import AGENTS_CONFIG, free_port

SIP = install.TOOLS["livekit-sip"]
assert SIP.vendor is not None
ARCHIVES = [a.file for a in SIP.vendor.archives]

# --------------------------------------------------------------------------- helpers


def _make_vendor(folder: Path, *, sums: bool = True) -> Path:
    """Tiny stand-ins for the three archives (right names and top folders) + SHA256SUMS."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    assert SIP.vendor is not None
    for a in SIP.vendor.archives:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            body = f"module github.com/livekit/{a.folder}\n".encode()
            info = tarfile.TarInfo(f"{a.folder}/go.mod")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        (folder / a.file).write_bytes(buf.getvalue())
        lines.append(f"{hashlib.sha256(buf.getvalue()).hexdigest()}  {a.file}\n")
    if sums:
        (folder / "SHA256SUMS").write_text("".join(lines))
    return folder


def _fake_bin(bindir: Path, name: str, body: str) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    p = bindir / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


FAKE_GO = r"""echo "$PWD|CGO_ENABLED=$CGO_ENABLED|$*" >> "$FAKE_GO_CALLS"
case "$1" in
  env) echo go1.26.8; exit 0 ;;
  install)
    echo "go: $2: reading https://proxy.golang.org/github.com/livekit/sip/cmd/livekit-sip/@v/v1.11.0.info: 403 Forbidden"
    echo "	server response: This module version is not available."
    exit 1 ;;
  mod) exit 0 ;;
  build)
    out=""; prev=""
    for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
    printf '#!/bin/sh\necho "SIP version 1.11.0"\n' > "$out"; exit 0 ;;
esac
exit 3
"""


@pytest.fixture
def fake_toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake go (proxy refuses livekit-sip), gcc and pkg-config on PATH; a fresh cache."""
    bindir = tmp_path / "bin"
    _fake_bin(bindir, "go", FAKE_GO)
    _fake_bin(bindir, "gcc", "exit 0\n")
    _fake_bin(bindir, "pkg-config", "exit 0\n")
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("FAKE_GO_CALLS", str(tmp_path / "go-calls"))
    monkeypatch.setenv("CONVOI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GOFLAGS", raising=False)
    return tmp_path / "go-calls"


# --------------------------------------------------------------------------- vendor folder


def test_vendor_folder_from_env_var_else_beside_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(install.VENDOR_ENV, raising=False)
    assert install.vendor_dir() == (install.repo_root() / ".." / "shared/vendor/livekit-sip").resolve()  # fmt: skip
    monkeypatch.setenv(install.VENDOR_ENV, str(tmp_path / "elsewhere"))
    assert install.vendor_dir() == tmp_path / "elsewhere"


def test_vendor_checksums_verified(tmp_path: Path) -> None:
    folder = _make_vendor(tmp_path / "vendor")
    sums = install.verify_vendor("livekit-sip", folder)
    assert sorted(sums) == sorted(ARCHIVES)


def test_checksum_mismatch_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _make_vendor(tmp_path / "vendor")
    monkeypatch.setenv(install.VENDOR_ENV, str(folder))
    with (folder / "media-sdk-5a5218b19550.tar.gz").open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(install.VendorSourceInvalid) as err:
        install.verify_vendor("livekit-sip")
    msg = str(err.value)
    assert "checksum mismatch for media-sdk-5a5218b19550.tar.gz" in msg
    assert str(folder) in msg and install.VENDOR_ENV in msg


@pytest.mark.parametrize("missing", ["protocol-cae1efd79202.tar.gz", "SHA256SUMS"])
def test_missing_archive_or_sums_is_one_clear_error(tmp_path: Path, missing: str) -> None:
    folder = _make_vendor(tmp_path / "vendor")
    (folder / missing).unlink()
    with pytest.raises(install.VendorSourceInvalid) as err:
        install.verify_vendor("livekit-sip", folder)
    msg = str(err.value)
    assert f"{missing} is missing in {folder}" in msg and install.VENDOR_ENV in msg


def test_unlisted_archive_is_refused(tmp_path: Path) -> None:
    folder = _make_vendor(tmp_path / "vendor")
    sums = folder / "SHA256SUMS"
    sums.write_text("".join(line for line in sums.read_text().splitlines(True) if "sip-v" not in line))  # fmt: skip
    with pytest.raises(install.VendorSourceInvalid, match=r"sip-v1.11.0.tar.gz is not listed"):
        install.verify_vendor("livekit-sip", folder)


# --------------------------------------------------------------------------- the build (faked)


def test_refused_go_install_falls_back_to_the_vendored_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_toolchain: Path
) -> None:
    folder = _make_vendor(tmp_path / "vendor")
    monkeypatch.setenv(install.VENDOR_ENV, str(folder))
    messages: list[str] = []

    path = install.ensure("livekit-sip", progress=messages.append)

    cache = tmp_path / "cache"
    assert path == cache / "bin" / "livekit-sip-v1.11.0" / "livekit-sip"
    assert os.access(path, os.X_OK)
    build = json.loads((path.parent / "BUILD.json").read_text())
    assert build["source"] == f"vendored archives ({folder})" and sorted(build["sha256"]) == sorted(ARCHIVES)  # fmt: skip
    src = cache / "build" / "livekit-sip-v1.11.0"
    assert sorted(p.name for p in src.iterdir()) == ["media-sdk", "protocol", "sip"]

    calls = [line.split("|") for line in fake_toolchain.read_text().splitlines()]
    go_calls = [(cwd, cgo, args) for cwd, cgo, args in calls if not args.startswith("env ")]
    tmp_out = next(a for _, _, a in go_calls if a.startswith("build")).split(" -o ")[1].split()[0]
    assert go_calls == [
        (str(Path.cwd()), "CGO_ENABLED=1", "install github.com/livekit/sip/cmd/livekit-sip@v1.11.0"),
        (str(src / "sip"), "CGO_ENABLED=1", "mod edit -replace github.com/livekit/media-sdk=../media-sdk -replace github.com/livekit/protocol=../protocol"),
        (str(src / "sip"), "CGO_ENABLED=1", f"build -ldflags -X github.com/livekit/sip/version.Version=1.11.0 -o {tmp_out} ./cmd/livekit-sip"),
    ]  # fmt: skip
    assert Path(tmp_out).name == "livekit-sip" and Path(tmp_out).parent.parent == cache / "bin"
    # the refusal is one progress line; go's own lines are in the build log only
    refused = [m for m in messages if "403" in m or "not available" in m]
    assert refused == [
        f"livekit-sip v1.11.0: go install: the Go module proxy refuses it (403 Forbidden); "
        f"building from the source archives in {folder}"
    ]
    assert "403 Forbidden" in (cache / "logs" / "livekit-sip-v1.11.0.build.log").read_text()

    fake_toolchain.unlink()
    assert install.ensure("livekit-sip") == path  # cached: instant, no go at all
    assert not fake_toolchain.exists()


def test_force_rebuilds_and_a_bad_archive_keeps_the_cached_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_toolchain: Path
) -> None:
    folder = _make_vendor(tmp_path / "vendor")
    monkeypatch.setenv(install.VENDOR_ENV, str(folder))
    path = install.ensure("livekit-sip", progress=lambda _m: None)
    (folder / "sip-v1.11.0.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(install.VendorSourceInvalid) as err:
        install.ensure("livekit-sip", force=True, progress=lambda _m: None)
    msg = str(err.value)
    assert "checksum mismatch for sip-v1.11.0.tar.gz" in msg and install.VENDOR_ENV in msg
    assert "go install github.com/livekit/sip/cmd/livekit-sip@v1.11.0 failed first" in msg
    assert install.is_installed("livekit-sip") and path.is_file()


def test_missing_vendor_folder_through_the_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_toolchain: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(install.VENDOR_ENV, str(tmp_path / "nowhere"))
    assert cli.main(["install", "livekit-sip"]) == 2
    out = capsys.readouterr().err
    assert f"SHA256SUMS is missing in {tmp_path / 'nowhere'}" in out
    assert install.VENDOR_ENV in out and "Traceback" not in out


def test_missing_c_libraries_name_the_debian_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_toolchain: Path
) -> None:
    _fake_bin(tmp_path / "bin", "pkg-config", 'case "$2" in soxr|opusfile) exit 1;; esac; exit 0\n')
    with pytest.raises(install.GoToolchainMissing) as err:
        install.ensure("livekit-sip", progress=lambda _m: None)
    msg = str(err.value)
    assert "apt-get install gcc pkg-config libopus-dev libopusfile-dev libsoxr-dev" in msg
    assert "pkg-config module opusfile (libopusfile-dev)" in msg
    assert "pkg-config module soxr (libsoxr-dev)" in msg and "(libopus-dev)" not in msg
    assert not (fake_toolchain.exists() and "install" in fake_toolchain.read_text())


# --------------------------------------------------------------------------- configs, CLI, state


def test_bridge_and_server_configs_follow_the_vendor_readme() -> None:
    cfg = BridgeConfig(
        ws_url="ws://127.0.0.1:7900",
        redis_address="127.0.0.1:6400",
        sip_port=5070,
        rtp_ports=(20000, 20100),
        health_port=7905,
    )
    assert yaml.safe_load(render_bridge_config(cfg)) == {
        "api_key": "devkey",
        "api_secret": "secret",
        "ws_url": "ws://127.0.0.1:7900",
        "redis": {"address": "127.0.0.1:6400"},
        "sip_port": 5070,
        "listen_ip": "127.0.0.1",
        "rtp_port": "20000-20100",
        "use_external_ip": False,
        "nat_1_to_1_ip": "127.0.0.1",
        "max_cpu_utilization": 1.0,
        "logging": {"level": "debug"},
        "health_port": 7905,
    }
    stack = SipStack(workdir=Path("/nonexistent"))
    server = yaml.safe_load(render_config(stack.server_config))
    assert server["redis"] == {"address": stack.redis_address}
    assert server["rtc"] == {
        "tcp_port": 7901,
        "udp_port": 7902,
        "use_external_ip": False,
        "node_ip": "127.0.0.1",
        "enable_loopback_candidate": True,
        "ips": {"includes": ["127.0.0.1/32"]},
        "stun_servers": ["127.0.0.1:3478"],
    }
    assert "stun_servers" not in yaml.safe_load(render_config(ServerConfig()))["rtc"]
    assert yaml.safe_load(render_bridge_config(stack.bridge_config))["ws_url"] == stack.url
    assert stack.sip_address == "127.0.0.1:5070" and stack.url == "ws://127.0.0.1:7900"


def test_service_ready_pattern_skips_the_earlier_sip_service_ready() -> None:
    early = "2026-12-01T16:56:10.335Z\tDEBUG\tsip\tsip/service.go:315\tsip service ready\t{}"
    ready = "2026-12-01T16:56:10.335Z\tDEBUG\tsip\tservice/service.go:183\tservice ready\t{}"
    assert not SERVICE_READY.search(early) and SERVICE_READY.search(ready)


def test_ports_stay_clear_of_the_other_stacks_and_the_trunks() -> None:
    """The test stack, `up --sip`, the e2e server (7880-7882) and test_telephony's (7990-7992)
    never share a port; trunks (agents_config) point at the callee, not at a bridge."""

    def used(p: SipPorts) -> set[int]:
        rtp = set(range(p.rtp[0], p.rtp[1] + 1))
        return ({p.livekit, p.rtc_tcp, p.rtc_udp, p.sip, p.health or 0, p.redis or 0} | rtp) - {0}

    assert not used(TEST_PORTS) & used(DEVSTACK_PORTS)
    assert not used(TEST_PORTS) & {7880, 7881, 7882, 7990, 7991, 7992}
    trunks = cli.trunk_addresses(AGENTS_CONFIG)
    assert trunks == ["127.0.0.1:5080"]
    ports = {int(t.rsplit(":", 1)[1]) for t in trunks}
    assert not ports & (used(TEST_PORTS) | used(DEVSTACK_PORTS))


def test_up_sip_prints_a_sip_worker_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVOI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(cli.install, "ensure", lambda *a, **kw: None)
    seen: list[object] = []

    def start(args: object) -> SipStack:
        seen.append(args)
        return SipStack(DEVSTACK_PORTS, workdir=tmp_path / "state")

    monkeypatch.setattr(cli, "_start_sip_stack", start)
    monkeypatch.setattr(cli, "_start_server", lambda *a: pytest.fail("no plain server with --sip"))
    assert cli.main(["up", "--sip", "--no-emulators"]) == 0
    out = capsys.readouterr().out
    assert "export LIVEKIT_URL=ws://127.0.0.1:7880" in out
    assert "CONVOI_DIAL_MODE" not in out and "participant" not in out
    assert "export CONVOI_SIP_BRIDGE_ADDRESS=127.0.0.1:5060" in out
    state = State.load()
    assert list(state.components) == ["redis", "livekit-server", "livekit-sip"]
    bridge = state.components["livekit-sip"]
    assert bridge.stop_signal == "SIGINT" and bridge.health_url == "http://127.0.0.1:7885/"
    assert state.components["redis"].ports == {"redis": 6390}
    args = seen[0]
    assert (args.sip_port, args.rtp_ports, args.redis_port) == (5060, "10000-10100", 6390)


def test_state_matches_redis_retitled_process_and_old_state_files() -> None:
    assert _same_program("redis-server 127.0.0.1:6390", "/usr/bin/redis-server")
    assert _same_program("/usr/bin/redis-server", "/usr/bin/redis-server")
    assert not _same_program("python3 x", "/usr/bin/redis-server")
    old = {"name": "livekit-server", "pid": 1, "owned": True}  # written before stop_signal
    assert Component(**old).stop_signal == "SIGTERM"


# --------------------------------------------------------------------------- slow: real build


@pytest.mark.slow
def test_real_vendored_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds livekit-sip v1.11.0 from ../shared/vendor/livekit-sip into a fresh cache
    (~280 s of CPU with a cold Go cache: 5-6 min on a busy 2-core machine)."""
    vendor = install.vendor_dir()
    if not (vendor / "SHA256SUMS").is_file():
        pytest.skip(f"no livekit-sip source archives in {vendor} (set {install.VENDOR_ENV})")
    monkeypatch.setenv("CONVOI_CACHE_DIR", str(tmp_path / "cache"))
    messages: list[str] = []
    path = install.ensure("livekit-sip", progress=messages.append)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    assert version.stdout.strip() == "SIP version 1.11.0", version
    assert any("built in" in m for m in messages), messages
    build = json.loads((path.parent / "BUILD.json").read_text())
    assert build["cgo"] is True and build["version"] == "v1.11.0"


# --------------------------------------------------------------------------- server: real calls

BUSY_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="busy">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""


@pytest.fixture(scope="module")
def sipp_callees(sip_stack: SipStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:  # fmt: skip
    """Two SIPp callees on free loopback ports: ``answer`` (``-sn uas``) and ``busy`` (486)."""
    binary = shutil.which("sipp")
    if binary is None:
        pytest.skip("sipp is not installed (Debian package sip-tester)")
    workdir = tmp_path_factory.mktemp("sipp")
    (workdir / "busy.xml").write_text(BUSY_SCENARIO)
    procs: list[subprocess.Popen[bytes]] = []
    addresses: dict[str, str] = {}
    try:
        for name, scenario in (("answer", ["-sn", "uas"]), ("busy", ["-sf", str(workdir / "busy.xml")])):  # fmt: skip
            port, media = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
            argv = [binary, *scenario, "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(media), "-nostdin"]  # fmt: skip
            with (workdir / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir))  # fmt: skip
            deadline = time.monotonic() + 10
            while port_free(port, socket.SOCK_DGRAM):
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sipp {name} did not start: {(workdir / f'{name}.log').read_text()}")  # fmt: skip
                time.sleep(0.05)
            addresses[name] = f"127.0.0.1:{port}"
        yield addresses
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def _phone(address: str) -> PhoneNumber:
    return PhoneNumber.model_validate(
        {
            "id": "phn_sipstack01",
            "number": "+15550000001",
            "label": "SIPp",
            "sip": {"address": address, "transport": "udp"},
        }
    )


async def _dial(
    stack: SipStack, address: str, room: str
) -> tuple[DialResult, list[ParticipantInfo]]:
    identity = phone_identity("+15550000002")
    async with api.LiveKitAPI(stack.http_url, stack.api_key, stack.api_secret) as lk:
        result = await dial(
            lk,
            phone=_phone(address),
            to_number="+15550000002",
            room=room,
            identity=identity,
            display_name="Callee",
            ringing_timeout=10.0,
            max_call_duration=None,
        )
        people = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        if result.answered:
            assert await hang_up(lk, room, identity)  # BYE to SIPp
        return result, list(people.participants)


@pytest.mark.server
async def test_real_call_answered_by_sipp(
    sip_stack: SipStack, sipp_callees: dict[str, str]
) -> None:
    room = f"sip-answer-{uuid.uuid4().hex[:6]}"
    result, people = await _dial(sip_stack, sipp_callees["answer"], room)
    assert result.answered and result.outcome is None, result
    assert (result.sip_call_id or "").startswith("SCL_")
    (phone,) = people
    assert phone.identity == "phone-15550000002" and phone.kind == ParticipantInfo.Kind.SIP
    assert phone.attributes["sip.callStatus"] == "active"
    assert phone.attributes["sip.phoneNumber"] == "+15550000002"


@pytest.mark.server
async def test_real_call_busy_486(sip_stack: SipStack, sipp_callees: dict[str, str]) -> None:
    room = f"sip-busy-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    result, _ = await _dial(sip_stack, sipp_callees["busy"], room)
    outcome = result.outcome
    assert not result.answered and outcome is not None
    assert (outcome.status, outcome.ended_reason, outcome.fault) == ("busy", "dial_busy", "customer")  # fmt: skip
    assert "486" in outcome.detail and outcome.sip_status_code == 486
    assert time.monotonic() - started < 5.0


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convoi.devstack.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.server
def test_cli_up_sip_status_logs_down(tmp_path: Path) -> None:
    """``up --sip`` on free ports (never the session stack's): three detached processes that
    ``status`` reports up, ``logs`` shows and ``down`` stops (livekit-sip by SIGINT)."""
    install.ensure("livekit-server")
    install.ensure("livekit-sip")  # may build once (minutes) on a fresh machine
    env = {**os.environ, "CONVOI_STATE_DIR": str(tmp_path / "state")}
    udp = socket.SOCK_DGRAM
    ports = [
        "--port", str(free_port()), "--rtc-tcp-port", str(free_port()),
        "--rtc-udp-port", str(free_port(udp)), "--sip-port", str(free_port(udp)),
        "--sip-health-port", str(free_port()), "--redis-port", str(free_port()),
        "--rtp-ports", "20300-20320",
    ]  # fmt: skip
    up = _cli("up", "--sip", "--no-emulators", *ports, env=env)
    state = (
        json.loads((tmp_path / "state" / "state.json").read_text()) if up.returncode == 0 else {}
    )
    pids = [c["pid"] for c in state.get("components", {}).values()]
    try:
        assert up.returncode == 0, up.stderr
        assert "export LIVEKIT_URL=ws://127.0.0.1:" in up.stdout
        assert "CONVOI_DIAL_MODE" not in up.stdout
        assert list(state["components"]) == ["redis", "livekit-server", "livekit-sip"]
        assert all(pid_alive(p) and os.getsid(p) == p for p in pids)  # outlived the CLI
        status = _cli("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert [line.split()[:2] for line in status.stdout.splitlines()] == [
            ["redis", "up"], ["livekit-server", "up"], ["livekit-sip", "up"]
        ]  # fmt: skip
        logs = _cli("logs", "livekit-sip", "-n", "200", env=env)
        assert logs.returncode == 0 and SERVICE_READY.search(logs.stdout)
        server_cfg = yaml.safe_load(Path(state["components"]["livekit-server"]["cmd"][-1]).read_text())  # fmt: skip
        assert server_cfg["redis"]["address"] == state["components"]["redis"]["urls"]["redis"].removeprefix("redis://")  # fmt: skip
        down = _cli("down", env=env)
        assert down.returncode == 0, down.stderr
        assert "livekit-sip: stopped" in down.stderr and "redis: stopped" in down.stderr
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), 15)
    finally:
        for p in pids:
            if pid_alive(p):
                os.killpg(p, 9)
