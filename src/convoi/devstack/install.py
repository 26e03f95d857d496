"""Pinned, cached builds of the real LiveKit binaries (``go install module@version``).

Each tool in :data:`TOOLS` is built once into
``<cache>/bin/<name>-<version>/<name>`` where ``<cache>`` is ``$CONVOI_CACHE_DIR`` or
``<repo>/.cache/devstack`` (``.cache/`` is git-ignored). Later calls find the binary and return
at once without touching Go. Builds go into a temporary folder next to the final one and are
renamed into place, so an interrupted build never leaves a half-written binary behind. Go's
module and build caches live under ``<cache>/go`` so CI can cache the whole folder.

livekit-sip (cgo) has a second route. ``go install`` is tried first (the ordinary route on the
open internet); when it fails (the Go proxy here refuses ``github.com/livekit/sip``), it is
built from the unmodified source archives in :func:`vendor_dir` (``$CONVOI_LIVEKIT_SIP_VENDOR``
or ``<repo>/../shared/vendor/livekit-sip``): ``SHA256SUMS`` is verified, the archives are
unpacked side by side into ``<cache>/build/livekit-sip-<version>/``, ``go mod edit -replace``
points the refused modules at the unpacked folders and ``go build`` produces the binary
(~280 s of CPU with a cold Go cache: 5-6 min on a busy 2-core machine; see that folder's
README).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TOOLS",
    "VENDOR_ENV",
    "BuildFailed",
    "DevstackError",
    "GoToolchainMissing",
    "Tool",
    "VendorArchive",
    "VendorSource",
    "VendorSourceInvalid",
    "binary_path",
    "cache_dir",
    "ensure",
    "ensure_all",
    "is_installed",
    "repo_root",
    "vendor_dir",
    "verify_vendor",
]

GO_DOWNLOAD_HINT = "install it from https://go.dev/dl or apt-get install golang"


class DevstackError(RuntimeError):
    """A devstack failure with a message meant for humans (the CLI prints it, no traceback)."""


class GoToolchainMissing(DevstackError):
    """Go (or, for cgo tools, the C toolchain / libraries) is not available."""


class BuildFailed(DevstackError):
    """``go install`` ran but did not produce the binary."""


class VendorSourceInvalid(DevstackError):
    """The source archives of a vendored build are missing or do not match ``SHA256SUMS``."""


VENDOR_ENV = "CONVOI_LIVEKIT_SIP_VENDOR"
"""Folder holding livekit-sip's source archives (default ``<repo>/../shared/vendor/livekit-sip``)."""


@dataclass(frozen=True)
class VendorArchive:
    """One ``git archive`` export: its file name and the top folder it unpacks to."""

    file: str
    folder: str


@dataclass(frozen=True)
class VendorSource:
    """How to build a tool from source archives when ``go install`` is refused.

    ``archives[0]`` is the main module (``go build`` runs in its folder); ``replace`` maps module
    paths to the folders (relative to the main module) that ``go mod edit -replace`` points at;
    ``package`` is what ``go build`` builds; ``ldflags`` is passed as ``-ldflags``.
    """

    archives: tuple[VendorArchive, ...]
    replace: tuple[tuple[str, str], ...]
    package: str
    ldflags: str = ""
    env: str = VENDOR_ENV
    default: tuple[str, ...] = ("..", "shared", "vendor", "livekit-sip")
    """Default folder, relative to the repository root (the repo is cloned beside ``shared/``)."""


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
    vendor: VendorSource | None = None
    """Fallback build from source archives when ``go install`` fails (livekit-sip)."""

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
        # Not built by default (`install` builds it only when named, `up --sip` when needed):
        # needs a C toolchain, Debian packages pkg-config libopus-dev libopusfile-dev
        # libsoxr-dev, and Redis to run. The Go proxy here refuses it: built from VENDOR_ENV.
        Tool(
            name="livekit-sip",
            module="github.com/livekit/sip/cmd/livekit-sip",
            version="v1.11.0",
            binary="livekit-sip",
            cgo=True,
            required=False,
            min_go="1.26",  # go.mod of v1.11.0 says `go 1.26`
            apt_packages=("gcc", "pkg-config", "libopus-dev", "libopusfile-dev", "libsoxr-dev"),
            pkg_config=("opus", "opusfile", "soxr"),
            vendor=VendorSource(
                archives=(
                    VendorArchive("sip-v1.11.0.tar.gz", "sip"),
                    VendorArchive("media-sdk-5a5218b19550.tar.gz", "media-sdk"),
                    VendorArchive("protocol-cae1efd79202.tar.gz", "protocol"),
                ),
                replace=(
                    ("github.com/livekit/media-sdk", "../media-sdk"),
                    ("github.com/livekit/protocol", "../protocol"),
                ),
                package="./cmd/livekit-sip",
                ldflags="-X github.com/livekit/sip/version.Version=1.11.0",
            ),
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

PKG_CONFIG_PACKAGES: dict[str, str] = {
    "opus": "libopus-dev",
    "opusfile": "libopusfile-dev",
    "soxr": "libsoxr-dev",
}
"""pkg-config module -> the Debian package that provides it."""


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
        if "pkg-config" not in missing:
            for module in t.pkg_config:
                r = subprocess.run(["pkg-config", "--exists", module], capture_output=True)
                if r.returncode != 0:
                    pkg = PKG_CONFIG_PACKAGES.get(module)
                    missing.append(f"pkg-config module {module}" + (f" ({pkg})" if pkg else ""))
        if missing:
            raise GoToolchainMissing(
                f"{t.name} {t.version} needs cgo and C libraries: "
                f"apt-get install {' '.join(t.apt_packages)} (scripts/bootstrap installs them; "
                f"missing: {', '.join(missing)})"
            )
    return go


# --------------------------------------------------------------------------- build

_SUMDB_FAILURE = re.compile(r"sum\.golang\.org|verifying .*: .*(lookup|dial|timeout|refused)", re.I)
_PROXY_REFUSED = re.compile(r"(403 Forbidden|404 Not Found|410 Gone|not available)", re.I)


def _go_env(t: Tool, gobin: Path | None, *, sumdb_off: bool) -> dict[str, str]:
    root = cache_dir() / "go"
    env = dict(os.environ)
    env.update(
        GOPATH=str(root),
        GOMODCACHE=str(root / "pkg" / "mod"),
        GOCACHE=str(root / "build-cache"),
        CGO_ENABLED="1" if t.cgo else "0",
    )
    if gobin is not None:
        env["GOBIN"] = str(gobin)
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
    cmd: list[str],
    env: dict[str, str],
    log_path: Path,
    label: str,
    progress: Progress,
    *,
    cwd: Path | None = None,
    echo: bool = True,
) -> tuple[int, list[str]]:
    """Run go, write its output to ``log_path``, summarise progress every ~15 s.

    ``echo``: also pass each output line (except ``go: downloading``) to ``progress``.
    """
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
        log.write(f"$ {'cd ' + str(cwd) + ' && ' if cwd else ''}{' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
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
                    if echo:
                        progress(f"{label}: {line}")
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            done.set()
    return rc, list(tail)


def _run_go_sumdb_retry(
    cmd: list[str],
    t: Tool,
    gobin: Path | None,
    log_path: Path,
    label: str,
    progress: Progress,
    *,
    cwd: Path | None = None,
    echo: bool = True,
) -> tuple[int, list[str]]:
    """:func:`_run_go`, retried once with ``GOSUMDB=off`` when the checksum lookup failed."""
    env = _go_env(t, gobin, sumdb_off=False)
    rc, tail = _run_go(cmd, env, log_path, label, progress, cwd=cwd, echo=echo)
    if rc != 0 and any(_SUMDB_FAILURE.search(line) for line in tail):
        progress(f"{label}: checksum database lookup failed; retrying once with GOSUMDB=off")
        env = _go_env(t, gobin, sumdb_off=True)
        rc, tail = _run_go(cmd, env, log_path, label, progress, cwd=cwd, echo=echo)
    return rc, tail


def _go_install_cmd(go: str, t: Tool) -> list[str]:
    return [go, "install", *(["-tags", ",".join(t.tags)] if t.tags else []), t.target]


def _proxy_refusal(tail: list[str]) -> str | None:
    """The reason (e.g. ``403 Forbidden``) when go's output says the module proxy refused."""
    for line in tail:
        m = _PROXY_REFUSED.search(line)
        if m:
            return m.group(1)
    return None


def _go_install(t: Tool, go: str, gobin: Path, log_path: Path, say: Progress) -> None:
    """``go install module@version`` into ``gobin``; :class:`BuildFailed` when it fails."""
    label = f"{t.name} {t.version}"
    say(f"{label}: go install {t.target} (cgo={'on' if t.cgo else 'off'}); log: {log_path}")
    rc, tail = _run_go_sumdb_retry(_go_install_cmd(go, t), t, gobin, log_path, label, say)
    if rc != 0 or not (gobin / t.binary).is_file():
        detail = "\n  ".join(tail[-12:]) or "(no output)"
        if _proxy_refusal(tail):
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


# --------------------------------------------------------------------------- vendored build


def vendor_dir(tool: str | Tool = "livekit-sip") -> Path:
    """Folder of ``tool``'s source archives: ``$CONVOI_LIVEKIT_SIP_VENDOR``, else
    ``<repo>/../shared/vendor/livekit-sip`` (the repository is cloned beside ``shared/``)."""
    t = _tool(tool)
    if t.vendor is None:
        raise DevstackError(f"{t.name} has no vendored source build")
    env = os.environ.get(t.vendor.env)
    if env:
        return Path(env).expanduser().resolve()
    return repo_root().joinpath(*t.vendor.default).resolve()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_vendor(tool: str | Tool = "livekit-sip", folder: Path | None = None) -> dict[str, str]:
    """Check every archive of ``tool`` against ``<folder>/SHA256SUMS``; file name -> sha256.

    Raises :class:`VendorSourceInvalid` naming the file, the folder and the environment variable
    when ``SHA256SUMS`` or an archive is missing, an archive is not listed, or a checksum differs.
    """
    t = _tool(tool)
    if t.vendor is None:
        raise DevstackError(f"{t.name} has no vendored source build")
    folder = folder or vendor_dir(t)
    where = f"in {folder} (set {t.vendor.env} to the folder holding {t.name}'s source archives)"
    sums_path = folder / "SHA256SUMS"
    try:
        sums_text = sums_path.read_text()
    except OSError as e:
        raise VendorSourceInvalid(
            f"cannot verify {t.name}'s source archives: SHA256SUMS is missing {where} "
            f"({type(e).__name__})"
        ) from None
    expected: dict[str, str] = {}
    for line in sums_text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            expected[parts[1].lstrip("*")] = parts[0].lower()
    found: dict[str, str] = {}
    for a in t.vendor.archives:
        path = folder / a.file
        if not path.is_file():
            raise VendorSourceInvalid(f"{t.name} source archive {a.file} is missing {where}")
        want = expected.get(a.file)
        if want is None:
            raise VendorSourceInvalid(f"{a.file} is not listed in SHA256SUMS {where}")
        have = _sha256(path)
        if have != want:
            raise VendorSourceInvalid(
                f"checksum mismatch for {a.file} {where}: SHA256SUMS says {want}, "
                f"the file hashes to {have}"
            )
        found[a.file] = have
    return found


def _unpack(archive: Path, dest: Path, folder: str) -> None:
    """Unpack ``archive`` into ``dest``; it must hold ``folder`` (its top folder)."""
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(dest, filter="data")
    if not (dest / folder).is_dir():
        raise VendorSourceInvalid(f"{archive} did not unpack to a folder {folder}/")


def vendor_commands(go: str, t: Tool, output: Path) -> list[tuple[str, list[str]]]:
    """The go commands of a vendored build, each with the folder (relative to the build folder)
    it runs in: ``go mod edit -replace …`` then ``go build -ldflags … -o output package``."""
    assert t.vendor is not None
    v = t.vendor
    main = v.archives[0].folder
    edit = [go, "mod", "edit"]
    for module, path in v.replace:
        edit += ["-replace", f"{module}={path}"]
    build = [go, "build"]
    if t.tags:
        build += ["-tags", ",".join(t.tags)]
    if v.ldflags:
        build += ["-ldflags", v.ldflags]
    build += ["-o", str(output), v.package]
    return [(main, edit), (main, build)]


def build_dir(tool: str | Tool) -> Path:
    """``<cache>/build/<name>-<version>``: where a vendored build unpacks its sources."""
    t = _tool(tool)
    return cache_dir() / "build" / f"{t.name}-{t.version}"


def _build_vendored(
    t: Tool, go: str, out_dir: Path, log_path: Path, say: Progress
) -> dict[str, str]:
    """Verify, unpack and ``go build`` ``t`` from its archives into ``out_dir / t.binary``."""
    label = f"{t.name} {t.version}"
    folder = vendor_dir(t)
    sums = verify_vendor(t, folder)
    assert t.vendor is not None
    work = build_dir(t)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for a in t.vendor.archives:
        _unpack(folder / a.file, work, a.folder)
    say(f"{label}: checksums verified, sources unpacked into {work}")
    for sub, cmd in vendor_commands(go, t, out_dir / t.binary):
        rc, tail = _run_go_sumdb_retry(cmd, t, None, log_path, label, say, cwd=work / sub)
        if rc != 0:
            detail = "\n  ".join(tail[-12:]) or "(no output)"
            raise BuildFailed(
                f"building {label} from the source archives in {folder} failed "
                f"(`{' '.join(cmd[1:3])}` exit code {rc}); full log: {log_path}\n  {detail}"
            )
    if not (out_dir / t.binary).is_file():
        raise BuildFailed(f"go build of {label} produced no binary; full log: {log_path}")
    return sums


def _install_or_vendor(
    t: Tool, go: str, gobin: Path, log_path: Path, say: Progress
) -> dict[str, object]:
    """``go install`` first (quietly); when it fails, one progress line and the vendored build."""
    assert t.vendor is not None
    label = f"{t.name} {t.version}"
    say(f"{label}: trying go install {t.target} (cgo on); log: {log_path}")
    rc, tail = _run_go_sumdb_retry(
        _go_install_cmd(go, t), t, gobin, log_path, label, say, echo=False
    )
    if rc == 0 and (gobin / t.binary).is_file():
        return {"source": "go install"}
    refused = _proxy_refusal(tail)
    why = (
        f"the Go module proxy refuses it ({refused})"
        if refused
        else f"it failed (exit code {rc}: {tail[-1] if tail else 'no output'})"
    )
    try:
        folder = vendor_dir(t)
    except DevstackError:
        folder = Path(f"${t.vendor.env}")
    say(f"{label}: go install: {why}; building from the source archives in {folder}")
    try:
        sums = _build_vendored(t, go, gobin, log_path, say)
    except VendorSourceInvalid as e:
        raise VendorSourceInvalid(f"{e}\n(go install {t.target} failed first: {why})") from None
    return {"source": f"vendored archives ({folder})", "sha256": sums}


def ensure(tool: str | Tool, *, force: bool = False, progress: Progress | None = None) -> Path:
    """Return the path of the pinned binary, building it if absent.

    Instant (no Go invocation) when the cached binary exists. Raises :class:`GoToolchainMissing`
    when Go (or a cgo tool's C libraries) is missing, :class:`BuildFailed` when the build fails
    and, for a vendored tool, :class:`VendorSourceInvalid` when its archives are missing or
    fail their checksums.
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
        if t.vendor is None:
            _go_install(t, go, tmp, log_path, say)
            how: dict[str, object] = {"source": "go install"}
        else:
            how = _install_or_vendor(t, go, tmp, log_path, say)
        (tmp / t.binary).rename(tmp / t.name)
        (tmp / t.name).chmod(0o755)
        (tmp / "BUILD.json").write_text(
            json.dumps(
                {
                    "module": t.module,
                    "version": t.version,
                    "go": _go_version(go),
                    "cgo": t.cgo,
                    **how,
                },
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
