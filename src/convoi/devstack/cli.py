"""``convoi-devstack``: install, start, inspect and stop the loopback devstack.

    convoi-devstack install [--force] [TOOL ...]          # livekit-server lk; livekit-sip when named
    convoi-devstack up [--sip] [--no-emulators] [--scenario FILE] [--port 7880] ...  # `export K=V`
    convoi-devstack env | status | down
    convoi-devstack logs [livekit-server|livekit-sip|redis|emulators] [-n 50] [-f]

The emulators follow ``scenarios/demo_web.yaml`` unless ``--scenario`` names another script.
``up --sip`` adds the real SIP bridge (:mod:`convoi.devstack.sip_stack`): Redis on 6390,
livekit-server wired to it, livekit-sip on SIP 5060 (RTP 10000-10100, health 7885): outbound
phone calls need it (without ``--sip`` only web calls work). The phone numbers' trunks
(``agents_config/phone_numbers.yaml``) point at the callee, SIPp on 127.0.0.1:5080.
Progress goes to stderr, the worker environment to stdout, so
``eval "$(convoi-devstack up)"`` works. Processes started by ``up`` run in their own session and
survive the CLI; ``down`` stops only what ``up`` recorded in ``.devstack/state.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from convoi.devstack import install
from convoi.devstack.install import DevstackError
from convoi.devstack.livekit_server import LiveKitServer, ServerConfig
from convoi.devstack.sip_stack import DEVSTACK_PORTS, SipPorts, SipStack
from convoi.devstack.state import Component, State, port_open, state_dir, stop_process, wait_until

__all__ = ["main"]

SERVER = "livekit-server"
EMULATORS = "emulators"
REDIS = "redis"
BRIDGE = "livekit-sip"
EMULATORS_MODULE = "convoi.devstack.emulators"
DEFAULT_SCENARIO = Path(__file__).parent / "scenarios" / "demo_web.yaml"
"""What ``up`` loads into the emulators unless ``--scenario`` says otherwise: the demo's billing
call, its caller lines repeating, so a caller (``--say …``) hears an answer on every call."""


def _say(msg: str) -> None:
    print(f"[devstack] {msg}", file=sys.stderr, flush=True)


def _worker_env(
    cfg: ServerConfig, emulator_port: int | None, sip: SipStack | None = None
) -> dict[str, str]:
    env = {
        "LIVEKIT_URL": cfg.url,
        "LIVEKIT_API_KEY": cfg.api_key,
        "LIVEKIT_API_SECRET": cfg.api_secret,
        "CONVOI_LOAD_THRESHOLD": "inf",
    }
    if sip is not None:
        env |= sip.worker_env()
    if emulator_port is not None:
        base = f"http://127.0.0.1:{emulator_port}"
        env |= {
            "OPENAI_BASE_URL": f"{base}/openai/v1",
            "OPENAI_API_KEY": "emulator",
            "DEEPGRAM_BASE_URL": f"{base}/deepgram/v1/listen",
            "DEEPGRAM_API_KEY": "emulator",
            "ELEVEN_BASE_URL": f"{base}/elevenlabs/v1",
            "ELEVEN_API_KEY": "emulator",
        }
    return env


def _print_env(env: dict[str, str]) -> None:
    for k, v in env.items():
        print(f"export {k}={v}")


# --------------------------------------------------------------------------- commands


def cmd_install(args: argparse.Namespace) -> int:
    """Build the pinned binaries (instant when cached).

    Without arguments, a failure of an optional tool (lk) is a warning; named tools must build.
    """
    explicit = bool(args.tools)
    for name in args.tools or install.DEFAULT_TOOLS:
        tool = install.TOOLS.get(name)
        try:
            path = install.ensure(name, force=args.force, progress=_say)
        except DevstackError as e:
            if explicit or tool is None or tool.required:
                raise
            _say(f"warning: optional {name} {tool.version} not installed:\n{e}")
            print(f"{name} {tool.version}: not installed (optional)")
            continue
        print(f"{name} {install.TOOLS[name].version}: {path}")
    return 0


def _start_server(cfg: ServerConfig, timeout: float) -> Component:
    server = LiveKitServer(cfg, detach=True, health_timeout=timeout)
    server.start()
    if server.reused:
        _say(f"{SERVER}: reusing the server already answering on {cfg.http_url} (not ours)")
        return Component(
            name=SERVER,
            pid=None,
            owned=False,
            urls={"ws": cfg.url, "http": cfg.http_url},
            health_url=cfg.http_url + "/",
        )
    _say(f"{SERVER}: up, pid {server.pid}, {cfg.url}, log {server.log_path}")
    return Component(
        name=SERVER,
        pid=server.pid,
        owned=True,
        cmd=server.command(),
        log=str(server.log_path),
        ports={"http": cfg.port, "rtc_tcp": cfg.rtc_tcp_port, "rtc_udp": cfg.rtc_udp_port},
        urls={"ws": cfg.url, "http": cfg.http_url},
        health_url=cfg.http_url + "/",
    )


def _emulators_available() -> bool:
    try:
        return importlib.util.find_spec(f"{EMULATORS_MODULE}.__main__") is not None
    except Exception:  # a broken package __init__ must not break `up`
        return False


def emulators_command(port: int, scenario: Path | None, record: Path) -> list[str]:
    """The command line ``up`` starts the emulators with (``scenario`` None: an empty script)."""
    cmd = [sys.executable, "-m", EMULATORS_MODULE, "--host", "127.0.0.1", "--port", str(port)]
    if scenario is not None:
        cmd += ["--scenario", str(scenario)]
    return [*cmd, "--record", str(record)]


def _start_emulators(port: int, timeout: float, scenario: Path | None) -> Component | None:
    """Start the provider emulators (following ``scenario``) if their module is importable."""
    if port_open("127.0.0.1", port):
        _say(f"{EMULATORS}: something already listens on 127.0.0.1:{port}; reusing it (not ours)")
        return Component(name=EMULATORS, pid=None, owned=False, ports={"http": port})
    if not _emulators_available():
        _say(f"{EMULATORS}: {EMULATORS_MODULE} has no __main__ yet; skipped")
        return None
    sd = state_dir()
    log = sd / "logs" / "emulators.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = emulators_command(port, scenario, sd / "emulators.jsonl")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlive the CLI
        )
    ok = wait_until(lambda: proc.poll() is not None or port_open("127.0.0.1", port), timeout)
    if proc.poll() is not None or not ok:
        stop_process(proc.pid)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise DevstackError(
            f"{EMULATORS} did not start listening on port {port} (log {log}):\n{tail}"
        )
    following = f", scenario {scenario}" if scenario is not None else ", no scenario"
    _say(f"{EMULATORS}: up, pid {proc.pid}, http://127.0.0.1:{port}{following}, log {log}")
    return Component(
        name=EMULATORS,
        pid=proc.pid,
        owned=True,
        cmd=cmd,
        log=str(log),
        ports={"http": port},
        urls={"http": f"http://127.0.0.1:{port}"},
    )


def _sip_components(stack: SipStack) -> dict[str, Component]:
    """State records of a started (detached) :class:`SipStack`."""
    redis, server, bridge = stack.redis, stack.server, stack.bridge
    cfg = stack.server_config
    return {
        REDIS: Component(
            name=REDIS,
            pid=redis.pid,
            owned=True,
            cmd=redis.command(),
            log=str(redis.log_path),
            ports={"redis": redis.port},
            urls={"redis": f"redis://{redis.address}"},
        ),
        SERVER: Component(
            name=SERVER,
            pid=server.pid,
            owned=True,
            cmd=server.command(),
            log=str(server.log_path),
            ports={"http": cfg.port, "rtc_tcp": cfg.rtc_tcp_port, "rtc_udp": cfg.rtc_udp_port},
            urls={"ws": cfg.url, "http": cfg.http_url},
            health_url=cfg.http_url + "/",
        ),
        BRIDGE: Component(
            name=BRIDGE,
            pid=bridge.pid,
            owned=True,
            cmd=bridge.command(),
            log=str(bridge.log_path),
            ports={"sip": stack.ports.sip, **({"health": h} if (h := stack.ports.health) else {})},
            urls={"sip": f"sip:{stack.sip_address}"},
            health_url=bridge.health_url,
            stop_signal="SIGINT",
        ),
    }


def trunk_addresses(config_dir: Path | None = None) -> list[str]:
    """The distinct ``sip.address`` of the phone numbers in ``config_dir`` (``$CONVOI_CONFIG_DIR``
    or ``agents_config``): where outbound calls go, i.e. where the SIPp callee must listen."""
    folder = config_dir or Path(
        os.environ.get("CONVOI_CONFIG_DIR") or install.repo_root() / "agents_config"
    )
    try:
        data = yaml.safe_load((folder / "phone_numbers.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    found: list[str] = []
    for phone in data.get("phone_numbers") or []:
        address = str(((phone or {}).get("sip") or {}).get("address") or "")
        if address and address not in found:
            found.append(address)
    return found


def _start_sip_stack(args: argparse.Namespace) -> SipStack:
    try:
        first, last = (int(x) for x in args.rtp_ports.split("-", 1))
    except ValueError:
        raise DevstackError(f"--rtp-ports wants FIRST-LAST, got {args.rtp_ports!r}") from None
    ports = SipPorts(
        livekit=args.port,
        rtc_tcp=args.rtc_tcp_port,
        rtc_udp=args.rtc_udp_port,
        sip=args.sip_port,
        rtp=(first, last),
        health=args.sip_health_port or None,
        redis=args.redis_port,
    )
    install.ensure(BRIDGE, progress=_say)
    stack = SipStack(ports, detach=True, timeout=args.timeout)
    stack.start()
    _say(f"{REDIS}: up, pid {stack.redis.pid}, {stack.redis_address}, log {stack.redis.log_path}")
    _say(f"{SERVER}: up, pid {stack.server.pid}, {stack.url} (redis), log {stack.server.log_path}")
    _say(
        f"{BRIDGE}: up, pid {stack.bridge.pid}, sip {stack.sip_address}, log {stack.bridge.log_path}"
    )
    for address in trunk_addresses():
        if address == stack.sip_address:
            _say(f"warning: a phone number's trunk points at livekit-sip itself ({address})")
        else:
            _say(
                f"phone numbers dial {address}: run the callee there, e.g. `sipp -sn uas "
                f"-i {address.rsplit(':', 1)[0]} -p {address.rsplit(':', 1)[-1]} "
                "-mi 127.0.0.1 -mp 16000 -rtp_echo`"
            )
    return stack


def cmd_up(args: argparse.Namespace) -> int:
    """Install if needed, start livekit-server (+ SIP stack, + emulators), record state, print env."""
    state = State.load()
    if any(c.owned and c.running() for c in state.components.values()):
        _say("already up (run `convoi-devstack down` first to restart)")
        _print_env(state.env)
        return 0
    started = time.monotonic()
    cfg = ServerConfig(
        port=args.port, rtc_tcp_port=args.rtc_tcp_port, rtc_udp_port=args.rtc_udp_port
    )
    install.ensure(SERVER, progress=_say)
    state = State()
    stack: SipStack | None = None
    if args.sip:
        stack = _start_sip_stack(args)
        cfg = stack.server_config
        state.components.update(_sip_components(stack))
    else:
        state.components[SERVER] = _start_server(cfg, args.timeout)
    state.save()  # record the servers before the emulators so `down` can clean up after a failure
    emu_port: int | None = None
    if not args.no_emulators:
        emu = _start_emulators(args.emulator_port, args.timeout, args.scenario)
        if emu is not None:
            state.components[EMULATORS] = emu
            emu_port = args.emulator_port
    state.env = _worker_env(cfg, emu_port, stack)
    state.save()
    _say(f"devstack up in {time.monotonic() - started:.1f}s; state {State.path()}")
    _print_env(state.env)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop what ``up`` started (and only that)."""
    state = State.load()
    if not state.components:
        _say("nothing to stop (no state file)")
        return 0
    for c in reversed(state.components.values()):  # livekit-sip before its server and Redis
        if not c.owned:
            _say(f"{c.name}: not started by convoi-devstack, left running")
        elif c.pid is not None and c.running():
            sig = signal.Signals[c.stop_signal]
            gone = stop_process(c.pid, timeout=args.timeout, sig=sig)
            _say(f"{c.name}: {'stopped' if gone else 'could not be stopped'} (pid {c.pid})")
        else:
            _say(f"{c.name}: already down")
    State.clear()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show each component up/down; exit 0 only when all recorded components are healthy."""
    state = State.load()
    if not state.components:
        probe = LiveKitServer(ServerConfig(port=args.port))
        extra = " (not started by convoi-devstack)" if probe.healthy() else ""
        print(f"{SERVER:16} {'up' if extra else 'down'}{extra}")
        return 1
    all_up = True
    for c in state.components.values():
        up = c.healthy() and (c.running() or not c.owned)
        all_up &= up
        who = f"pid {c.pid}" if c.owned else "not ours"
        where = " ".join(c.urls.values()) or " ".join(f":{p}" for p in c.ports.values())
        print(f"{c.name:16} {'up' if up else 'down':5} {who:12} {where}")
    return 0 if all_up else 1


def cmd_env(args: argparse.Namespace) -> int:
    """Print the environment recorded by ``up``."""
    state = State.load()
    if not state.env:
        _say("devstack is not up")
        return 1
    _print_env(state.env)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Print (and with -f follow) the tail of a component's log."""
    state = State.load()
    comp = state.components.get(args.name)
    if comp is None or not comp.log:
        _say(
            f"no log recorded for {args.name!r} (components: {', '.join(state.components) or 'none'})"
        )
        return 1
    path = Path(comp.log)
    with path.open("r", errors="replace") as f:
        for line in f.readlines()[-args.lines :]:
            sys.stdout.write(line)
        sys.stdout.flush()
        try:
            while args.follow:
                line = f.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``convoi-devstack``."""
    p = argparse.ArgumentParser(prog="convoi-devstack", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("install", help="build the pinned binaries (instant when cached)")
    s.add_argument(
        "tools",
        nargs="*",
        metavar="TOOL",
        help=f"default: {' '.join(install.DEFAULT_TOOLS)}; known: {' '.join(install.TOOLS)}",
    )
    s.add_argument("--force", action="store_true", help="rebuild even when cached")
    s.set_defaults(func=cmd_install)

    s = sub.add_parser("up", help="start livekit-server (+ emulators) and print the worker env")
    s.add_argument("--port", type=int, default=DEVSTACK_PORTS.livekit)
    s.add_argument("--rtc-tcp-port", type=int, default=DEVSTACK_PORTS.rtc_tcp)
    s.add_argument("--rtc-udp-port", type=int, default=DEVSTACK_PORTS.rtc_udp)
    s.add_argument(
        "--sip",
        action="store_true",
        help="also Redis and livekit-sip (the real SIP bridge; builds it once, minutes); "
        "the worker env then dials over SIP",
    )
    s.add_argument("--sip-port", type=int, default=DEVSTACK_PORTS.sip, help="livekit-sip SIP port")
    s.add_argument(
        "--rtp-ports",
        default="-".join(map(str, DEVSTACK_PORTS.rtp)),
        metavar="FIRST-LAST",
        help="livekit-sip RTP port range",
    )
    s.add_argument(
        "--sip-health-port",
        type=int,
        default=DEVSTACK_PORTS.health,
        help="livekit-sip health port (0: none)",
    )
    s.add_argument("--redis-port", type=int, default=DEVSTACK_PORTS.redis)
    s.add_argument("--emulator-port", type=int, default=18500)
    s.add_argument("--no-emulators", action="store_true")
    s.add_argument(
        "--scenario",
        type=Path,
        default=DEFAULT_SCENARIO,
        metavar="FILE",
        help="the emulators' script (YAML/JSON; default: the demo's billing call, repeating)",
    )
    s.add_argument("--timeout", type=float, default=60.0, help="health wait per component (s)")
    s.set_defaults(func=cmd_up)

    s = sub.add_parser("down", help="stop what `up` started")
    s.add_argument("--timeout", type=float, default=10.0, help="SIGTERM grace before SIGKILL (s)")
    s.set_defaults(func=cmd_down)

    s = sub.add_parser("status", help="show each component up/down")
    s.add_argument("--port", type=int, default=7880, help="server port to probe without state")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("env", help="print the worker environment recorded by `up`")
    s.set_defaults(func=cmd_env)

    s = sub.add_parser("logs", help="tail a component's log")
    s.add_argument(
        "name",
        nargs="?",
        default=SERVER,
        help=f"{SERVER} (default), {BRIDGE}, {REDIS} or {EMULATORS}",
    )
    s.add_argument("-n", "--lines", type=int, default=50)
    s.add_argument("-f", "--follow", action="store_true")
    s.set_defaults(func=cmd_logs)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``convoi-devstack`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DevstackError as e:
        print(f"convoi-devstack: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
