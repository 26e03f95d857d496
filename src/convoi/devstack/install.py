"""Pinned, cached builds of the real LiveKit binaries (``go install module@version``).

Each tool in :data:`TOOLS` is built once into
``<cache>/bin/<name>-<version>/<name>`` where ``<cache>`` is ``$CONVOI_CACHE_DIR`` or
``<repo>/.cache/devstack`` (``.cache/`` is git-ignored). Later calls find the binary and return
at once without touching Go. Builds go into a temporary folder next to the final one and are
renamed into place, so an interrupted build never leaves a half-written binary behind. Go's
module and build caches live under ``<cache>/go`` so CI can cache the whole folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TOOLS",
    "BuildFailed",
    "DevstackError",
    "GoToolchainMissing",
    "Tool",
    "binary_path",
    "cache_dir",
    "ensure",
    "ensure_all",
    "is_installed",
    "repo_root",
]

GO_DOWNLOAD_HINT = "install it from https://go.dev/dl or apt-get install golang"


class DevstackError(RuntimeError):
    """A devstack failure with a message meant for humans (the CLI prints it, no traceback)."""


class GoToolchainMissing(DevstackError):
    """Go (or, for cgo tools, the C toolchain / libraries) is not available."""


class BuildFailed(DevstackError):
    """``go install`` ran but did not produce the binary."""


@dataclass(frozen=True)
class Tool:
    """One pinned binary built with ``go install``.

    ``binary`` is the file name ``go install`` produces (the last element of the package path);
    ``name`` is what it is renamed to in the cache.
    """

    name: str
    module: str
    version: str
    binary: str
    cgo: bool = False
    required: bool = True
    min_go: str = "1.24"
    apt_packages: tuple[str, ...] = ()
    pkg_config: tuple[str, ...] = field(default=())
    tags: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """``module@version`` as passed to ``go install``."""
        return f"{self.module}@{self.version}"


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            name="livekit-server",
            module="github.com/livekit/livekit-server/cmd/server",
            version="v1.13.5",
            binary="server",
            min_go="1.26",  # go.mod of v1.13.5 says `go 1.26`
        ),
        Tool(
            name="lk",
            module="github.com/livekit/livekit-cli/v2/cmd/lk",
            version="v2.16.4",
            binary="lk",
            required=False,  # handy for manual runs; nothing in the devstack depends on it
            min_go="1.24",
        ),
        # Not built by default (`ensure_all` skips cgo tools unless asked): needs a C toolchain,
        # Debian packages pkg-config libopus-dev libopusfile-dev libsoxr-dev, and Redis to run.
        Tool(
            name="livekit-sip",
            module="github.com/livekit/sip/cmd/livekit-sip",
            version="v1.11.0",
            binary="livekit-sip",
            cgo=True,
            required=False,
            min_go="1.24",
            apt_packages=("gcc", "pkg-config", "libopus-dev", "libopusfile-dev", "libsoxr-dev"),
            pkg_config=("opus", "opusfile", "soxr"),
        ),
    )
}
DEFAULT_TOOLS: tuple[str, ...] = ("livekit-server", "lk")

Progress = Callable[[str], None]


def _default_progress(msg: str) -> None:
    print(f"[devstack] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- locations


def repo_root(start: Path | None = None) -> Path:
    """Nearest parent of ``start`` (default: cwd, then this package) holding ``pyproject.toml``."""
    candidates = [start] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for origin in candidates:
        for p in (origin.resolve(), *origin.resolve().parents):
            if (p / "pyproject.toml").is_file():
                return p
    raise DevstackError("cannot find the repository root (no pyproject.toml above the cwd)")


def cache_dir() -> Path:
    """``$CONVOI_CACHE_DIR`` or ``<repo>/.cache/devstack``."""
    env = os.environ.get("CONVOI_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else repo_root() / ".cache" / "devstack"


def _tool(name: str | Tool) -> Tool:
    if isinstance(name, Tool):
        return name
    try:
        return TOOLS[name]
    except KeyError:
        raise DevstackError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}") from None


def install_dir(tool: str | Tool) -> Path:
    """``<cache>/bin/<name>-<version>``: the folder holding one pinned build."""
    t = _tool(tool)
    return cache_dir() / "bin" / f"{t.name}-{t.version}"


def binary_path(tool: str | Tool) -> Path:
    """Where the pinned binary of ``tool`` lives (whether or not it is built yet)."""
    t = _tool(tool)
    return install_dir(t) / t.name


def is_installed(tool: str | Tool) -> bool:
    """True when the pinned binary is present and executable."""
    p = binary_path(tool)
    return p.is_file() and os.access(p, os.X_OK)


# --------------------------------------------------------------------------- toolchain checks


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def _go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip().removeprefix("go") or "0"


def _check_toolchain(t: Tool, progress: Progress) -> str:
    """Return the ``go`` executable, or raise :class:`GoToolchainMissing` saying what to install."""
    need = f"Go >= {t.min_go} is required to build {t.name} {t.version}: {GO_DOWNLOAD_HINT}"
    go = shutil.which("go")
    if go is None:
        raise GoToolchainMissing(f"{need}; go: not found on PATH")
    have = _go_version(go)
    if _version_tuple(have) < _version_tuple(t.min_go):
        if os.environ.get("GOTOOLCHAIN", "auto").startswith("local"):
            raise GoToolchainMissing(f"{need}; found go {have} and GOTOOLCHAIN=local")
        progress(f"go {have} < {t.min_go}: go will try to fetch a newer toolchain (GOTOOLCHAIN)")
    if t.cgo:
        missing = [c for c in ("gcc", "pkg-config") if shutil.which(c) is None]
        if not missing and t.pkg_config:
            r = subprocess.run(["pkg-config", "--exists", *t.pkg_config], capture_output=True)
            if r.returncode != 0:
                missing.append("pkg-config modules " + " ".join(t.pkg_config))
        if missing:
            raise GoToolchainMissing(
                f"{t.name} {t.version} needs cgo: apt-get install {' '.join(t.apt_packages)} "
                f"(missing: {', '.join(missing)})"
            )
    return go


# --------------------------------------------------------------------------- build

_SUMDB_FAILURE = re.compile(r"sum\.golang\.org|verifying .*: .*(lookup|dial|timeout|refused)", re.I)
_PROXY_REFUSED = re.compile(r"(403 Forbidden|404 Not Found|410 Gone|not available)", re.I)


def _go_env(t: Tool, gobin: Path, *, sumdb_off: bool) -> dict[str, str]:
    root = cache_dir() / "go"
    env = dict(os.environ)
    env.update(
        GOBIN=str(gobin),
        GOPATH=str(root),
        GOMODCACHE=str(root / "pkg" / "mod"),
        GOCACHE=str(root / "build-cache"),
        CGO_ENABLED="1" if t.cgo else "0",
    )
    flags = env.get("GOFLAGS", "").split()
    # -modcacherw: module cache files stay writable so CI / `rm -rf` can clean it up.
    for f in ("-modcacherw", "-buildvcs=false", "-trimpath"):
        if f not in flags:
            flags.append(f)
    env["GOFLAGS"] = " ".join(flags)
    if sumdb_off:
        env["GOSUMDB"] = "off"
    return env


def _run_go(
    cmd: list[str], env: dict[str, str], log_path: Path, label: str, progress: Progress
) -> tuple[int, list[str]]:
    """Run go, write its output to ``log_path``, summarise progress every ~15 s."""
    tail: deque[str] = deque(maxlen=25)
    downloads = 0
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(15.0):
            progress(
                f"{label}: still building, {time.monotonic() - started:.0f}s elapsed, "
                f"{downloads} modules downloaded"
            )

    hb = threading.Thread(target=heartbeat, daemon=True)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        hb.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                line = line.rstrip()
                if line.startswith("go: downloading"):
                    downloads += 1
                else:
                    tail.append(line)
                    progress(f"{label}: {line}")
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            done.set()
    return rc, list(tail)


def ensure(tool: str | Tool, *, force: bool = False, progress: Progress | None = None) -> Path:
    """Return the path of the pinned binary, building it with ``go install`` if absent.

    Instant (no Go invocation) when the cached binary exists. Raises :class:`GoToolchainMissing`
    when Go is missing and :class:`BuildFailed` when the build fails.
    """
    t = _tool(tool)
    say = progress or _default_progress
    final = install_dir(t)
    if is_installed(t) and not force:
        return final / t.name
    label = f"{t.name} {t.version}"
    go = _check_toolchain(t, say)
    final.parent.mkdir(parents=True, exist_ok=True)
    log_dir = cache_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{t.name}-{t.version}.build.log"
    log_path.write_text("")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    started = time.monotonic()
    try:
        cmd = [go, "install", *(["-tags", ",".join(t.tags)] if t.tags else []), t.target]
        say(f"{label}: go install {t.target} (cgo={'on' if t.cgo else 'off'}); log: {log_path}")
        rc, tail = _run_go(cmd, _go_env(t, tmp, sumdb_off=False), log_path, label, say)
        if rc != 0 and any(_SUMDB_FAILURE.search(line) for line in tail):
            say(f"{label}: checksum database lookup failed; retrying once with GOSUMDB=off")
            rc, tail = _run_go(cmd, _go_env(t, tmp, sumdb_off=True), log_path, label, say)
        built = tmp / t.binary
        if rc != 0 or not built.is_file():
            detail = "\n  ".join(tail[-12:]) or "(no output)"
            if any(_PROXY_REFUSED.search(line) for line in tail):
                proxy = os.environ.get("GOPROXY") or "https://proxy.golang.org,direct"
                hint = (
                    f"the Go module proxy ({proxy}) does not serve {t.target}: point GOPROXY "
                    "at a proxy that does (or allow direct access to GitHub)"
                )
            else:
                hint = f"Go >= {t.min_go} is required to build {label}: {GO_DOWNLOAD_HINT}"
            raise BuildFailed(
                f"building {label} failed (go install exit code {rc}); full log: {log_path}\n"
                f"  {detail}\n{hint}"
            )
        built.rename(tmp / t.name)
        (tmp / t.name).chmod(0o755)
        (tmp / "BUILD.json").write_text(
            json.dumps(
                {"module": t.module, "version": t.version, "go": _go_version(go), "cgo": t.cgo},
                indent=2,
            )
        )
        tmp.chmod(0o755)  # mkdtemp creates 0700
        if force and final.exists():
            shutil.rmtree(final)
        try:
            tmp.rename(final)
        except OSError:
            if not is_installed(t):  # lost a race against a concurrent build: that one is fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"{label}: built in {time.monotonic() - started:.0f}s -> {final / t.name}")
    return final / t.name


def ensure_all(
    names: Iterable[str] = DEFAULT_TOOLS, *, force: bool = False, progress: Progress | None = None
) -> dict[str, Path]:
    """:func:`ensure` each named tool (default: livekit-server and lk); name -> binary path."""
    return {n: ensure(n, force=force, progress=progress) for n in names}
