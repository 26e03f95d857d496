"""The unit-mode guard: with ``CONVOI_UNIT_ONLY=1`` (set by ``scripts/test --unit``) no test may
start a server process.

``tests/conftest.py`` installs :func:`guard` for the whole session when the variable is set. Any
``subprocess.Popen`` (``subprocess.run``, ``asyncio.create_subprocess_exec`` and the devstack
harness all go through it) of livekit-server, Redis, PostgreSQL, Chromium, the worker's serving
commands, the emulators, the receiver or the control plane then raises :class:`ServerRefused`, and
the test fails even if the code under test swallowed the error. Tests that need one are marked
``e2e``, ``server`` or ``postgres`` and are deselected by ``scripts/test --unit``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import Any

UNIT_ONLY_ENV = "CONVOI_UNIT_ONLY"

EXECUTABLES = frozenset(
    {
        "livekit-server",
        "livekit-sip",
        "lk",
        "redis-server",
        "postgres",  # the server binary, and scripts/postgres
        "pg_ctl",
        "initdb",
        "chromium",  # Debian's binary, and scripts/chromium
        "chromium-browser",
        "node",  # the playwright browser driver
        "sipp",
    }
)
"""Programs that are (or start) a server, by file name."""

MODULES = frozenset(
    {
        "convoi.devstack.emulators",
        "convoi.devstack.demo",
        "convoi.devstack.bench",
        "convoi.devstack.bench_sip",
        "convoi.receiver",
        "convoi.devstack.fake_livekit",
        "convoi.devstack.loadtest",
    }
)
"""``python -m`` modules that serve whatever their arguments."""

_SERVING = ("start", "dev", "console", "connect")
COMMANDS: dict[str, frozenset[tuple[str, ...]]] = {
    "convoi.worker.cli": frozenset((c,) for c in _SERVING),
    "convoi.devstack.cli": frozenset({("up",)}),
    "convoi.controlplane.cli": frozenset({("serve",)}),
}
"""``python -m`` modules whose listed sub-commands serve (``check-config`` etc. stay allowed)."""

CONSOLE_SCRIPTS = {
    "convoi-worker": COMMANDS["convoi.worker.cli"],
    "convoi-devstack": COMMANDS["convoi.devstack.cli"],
    "convoi-api": COMMANDS["convoi.controlplane.cli"],
}

SHELLS = frozenset({"sh", "bash", "dash", "zsh"})
WRAPPERS = frozenset({"env", "nohup", "setsid", "exec", "timeout", "runuser", "su", "sudo"})


class ServerRefused(RuntimeError):
    """A test tried to start a server process in unit mode."""


def _argv(args: Any, shell: bool) -> list[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        if not shell:
            return [text]
        try:
            return shlex.split(text)
        except ValueError:
            return text.split()
    return [os.fsdecode(a) for a in args]


def _first_command(argv: Sequence[str]) -> str | None:
    """Which server ``argv`` (one command, no shell) would start, or None."""
    if not argv:
        return None
    name = PurePath(argv[0]).name
    if name in EXECUTABLES:
        return name
    if name in SHELLS:
        if "-c" in argv[1:-1]:
            return refused(argv[argv.index("-c", 1) + 1], shell=True)
        return _first_command(argv[1:])  # `bash scripts/postgres start`
    if name in CONSOLE_SCRIPTS:
        command = _serving(CONSOLE_SCRIPTS[name], argv[1:])
        return f"{name} {command}" if command else None
    if name in WRAPPERS:  # `env A=1 redis-server`, `runuser -u postgres -- initdb`, …
        return next(filter(None, (_first_command(argv[i:]) for i in range(1, len(argv)))), None)
    if name.startswith("python"):
        return _python(argv[1:])
    return None


def _python(args: Sequence[str]) -> str | None:
    if "-c" in args:
        return None
    if "-m" in args:
        i = args.index("-m")
        module = args[i + 1] if i + 1 < len(args) else ""
        if module in MODULES or module.removesuffix(".__main__") in MODULES:
            return f"python -m {module}"
        command = _serving(COMMANDS.get(module, frozenset()), args[i + 2 :])
        if command:
            return f"python -m {module} {command}"
    return None


def _serving(commands: frozenset[tuple[str, ...]], args: Sequence[str]) -> str | None:
    """The serving sub-command ``args`` start with (options skipped), e.g. ``"worker start"``."""
    words = tuple(a for a in args if not a.startswith("-"))
    return next((" ".join(c) for c in commands if words[: len(c)] == c), None)


def refused(args: Any, shell: bool = False) -> str | None:
    """The server that ``Popen(args, shell=shell)`` would start (e.g. ``"redis-server"``), else
    None. A shell command line is split and each of its ``;``/``&&``/``|`` parts is checked."""
    argv = _argv(args, shell)
    if not shell:
        return _first_command(argv)
    part: list[str] = []
    for token in [*argv, ";"]:
        if token in (";", "&&", "||", "|", "&"):
            found = _first_command(part)
            if found:
                return found
            part = []
        else:
            part.append(token)
    return None


@contextlib.contextmanager
def guard(violations: list[str]) -> Iterator[None]:
    """While active, ``subprocess.Popen`` refuses server commands (each refusal is appended to
    ``violations`` as well as raised, so a caught error still fails the test)."""
    original = subprocess.Popen.__init__

    def guarded_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        server = refused(args, bool(kwargs.get("shell", False)))
        executable = kwargs.get("executable")
        if server is None and executable is not None:
            server = refused([os.fsdecode(executable)])
        if server is not None:
            message = (
                f"{UNIT_ONLY_ENV}=1: a unit test tried to start {server} ({args!r}); "
                "mark the test `server`, `postgres` or `e2e` (see pyproject.toml)"
            )
            violations.append(message)
            self.args, self.returncode = args, None  # what Popen's repr and __del__ look at
            raise ServerRefused(message)
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = guarded_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]
