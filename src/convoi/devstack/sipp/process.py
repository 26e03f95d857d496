"""One SIPp process playing one side of one call, and what it logged about the call.

SIPp runs in the foreground (``-bg`` exits 99 from its parent) with ``-m 1`` so it ends with the
call, and traces every SIP message it sends or receives to a tab-separated file
(``-trace_shortmsg``): date, time, epoch, ``S``/``R``, Call-ID, CSeq, first line. Waits poll that
file (and ``/proc/net/udp`` for the bound port) with deadlines; nothing waits on a fixed sleep.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from convoi.devstack.harness import ManagedProcess
from convoi.devstack.sipp.capture import Recording, RtpCapture

__all__ = ["Role", "SipMessage", "SippPhone", "read_messages", "udp_port_bound"]

Role = Literal["callee", "caller"]

_POLL_S = 0.02


@dataclass(frozen=True)
class SipMessage:
    """One SIP message as SIPp traced it."""

    at: float
    """Epoch seconds."""
    sent: bool
    """True when this SIPp sent it, False when it received it."""
    call_id: str
    cseq: str
    """E.g. ``1 INVITE``."""
    first_line: str

    @property
    def method(self) -> str | None:
        """The request method (``INVITE``, ``BYE``…), None for a response."""
        return None if self.status is not None else self.first_line.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        """The response code, None for a request."""
        if not self.first_line.startswith("SIP/2.0 "):
            return None
        return int(self.first_line.split(" ", 2)[1])

    @property
    def cseq_method(self) -> str:
        """The method the CSeq names (for a response: the request it answers)."""
        return self.cseq.rsplit(" ", 1)[-1]


def read_messages(path: Path) -> list[SipMessage]:
    """The messages of a ``-trace_shortmsg`` file (complete lines only)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        fields = line.rstrip("\r\n").split("\t")
        if not line.endswith("\n") or len(fields) < 7 or fields[3] not in ("S", "R"):
            continue
        cseq = fields[5].removeprefix("CSeq:").strip()
        out.append(SipMessage(float(fields[2]), fields[3] == "S", fields[4], cseq, fields[6]))
    return out


def udp_port_bound(host: str, port: int) -> bool:
    """True when some socket is bound to UDP ``host:port`` (or the wildcard address)."""
    wanted = {"".join(reversed([f"{int(b):02X}" for b in host.split(".")])), "00000000"}
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        addr, _, hex_port = line.split()[1].partition(":")
        if int(hex_port, 16) == port and addr in wanted:
            return True
    return False


class SippPhone:
    """A SIPp process for one side of one call; subclasses render the scenario.

    ``workdir`` receives the scenario, pcaps, SIPp's traces (``<role>.messages.csv``,
    ``<role>.messages.log``, ``<role>.errors.log``, ``<role>.stats.csv``, ``<role>.screen.log``),
    its output (``<role>.sipp.log``) and, with ``record``, the capture ``<role>.rtp.pcap``.
    """

    role: Role = "callee"

    def __init__(
        self,
        scenario: Path,
        *,
        workdir: Path,
        sip_port: int,
        media_port: int,
        host: str = "127.0.0.1",
        remote: str | None = None,
        record: bool = True,
        timeout_s: float = 180.0,
    ) -> None:
        self.workdir = workdir
        self.host, self.sip_port, self.media_port = host, sip_port, media_port
        self.messages_path = workdir / f"{self.role}.messages.csv"
        self.capture = RtpCapture(media_port, workdir / f"{self.role}.rtp.pcap") if record else None
        binary = shutil.which("sipp")
        if binary is None:
            raise RuntimeError("sipp is not installed (Debian package sip-tester)")
        argv = [binary, *([remote] if remote else []), "-sf", str(scenario)]
        argv += ["-i", host, "-p", str(sip_port), "-mi", host, "-mp", str(media_port)]
        argv += ["-m", "1", "-nostdin", "-aa", "-timeout", f"{round(timeout_s)}s"]
        for flag, option, name in (
            ("-trace_shortmsg", "-shortmessage_file", "messages.csv"),
            ("-trace_msg", "-message_file", "messages.log"),
            ("-trace_err", "-error_file", "errors.log"),
            ("-trace_screen", "-screen_file", "screen.log"),
            ("-trace_stat", "-stf", "stats.csv"),
        ):
            argv += [flag, option, str(workdir / f"{self.role}.{name}")]
        argv += ["-fd", "1"]
        self.process = ManagedProcess(f"sipp {self.role}", argv, workdir / f"{self.role}.sipp.log")
        self.terminated = False
        """:meth:`stop` had to end SIPp (the scenario had not finished)."""

    @property
    def address(self) -> str:
        """``host:port`` of this SIPp's SIP socket (an outbound trunk's address)."""
        return f"{self.host}:{self.sip_port}"

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        """Start the capture (if any), then SIPp; returns once SIPp's SIP socket is bound."""
        for port in (self.sip_port, self.media_port):
            if udp_port_bound(self.host, port):
                raise RuntimeError(f"UDP {self.host}:{port} is already in use (a stale SIPp?)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.capture is not None:
                self.capture.start(timeout)
            self.process.start()
            self.process.wait_for(
                lambda: udp_port_bound(self.host, self.sip_port), timeout, f"SIP {self.address}"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """End SIPp if it still runs (SIGTERM, then SIGKILL), then the capture; the exit code.

        SIPp exits 0 on SIGTERM too: :attr:`terminated` tells that it did not end by itself.
        """
        self.terminated = self.process.running()
        code = self.process.stop(timeout)
        if self.capture is not None:
            self.capture.stop()
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def exit_code(self) -> int | None:
        """SIPp's exit code once it ended (0: the scenario completed; 1: the call failed)."""
        return None if self.process.proc is None else self.process.proc.poll()

    def wait_for_exit(self, timeout: float) -> int:
        """Wait until SIPp ends by itself (it does after the call with ``-m 1``)."""
        deadline = time.monotonic() + timeout
        while (code := self.exit_code) is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.process.name} still running after {timeout:g}s")
            time.sleep(_POLL_S)
        return code

    # ---- what happened -----------------------------------------------------------------------

    def messages(self) -> list[SipMessage]:
        """Every SIP message sent or received so far."""
        return read_messages(self.messages_path)

    def wait_for_message(
        self, predicate: Callable[[SipMessage], bool], timeout: float, what: str
    ) -> SipMessage:
        """The first traced message matching ``predicate``; waits up to ``timeout`` for it."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.exit_code is not None  # read before the file: no message is lost
            found = next((m for m in self.messages() if predicate(m)), None)
            if found is not None:
                return found
            if done:
                raise RuntimeError(f"{self.process.name} exited without {what}:\n{self.summary()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.process.name}: no {what} after {timeout:g}s")
            time.sleep(_POLL_S)

    def _bye(self) -> SipMessage | None:
        return next((m for m in self.messages() if m.method == "BYE"), None)

    @property
    def bye_from(self) -> Role | None:
        """Who sent the first BYE: this SIPp's role or the other side's; None before any BYE."""
        bye = self._bye()
        if bye is None:
            return None
        other: Role = "caller" if self.role == "callee" else "callee"
        return self.role if bye.sent else other

    @property
    def received_bye(self) -> bool:
        """The other side hung up (sent BYE)."""
        return any(m.method == "BYE" and not m.sent for m in self.messages())

    @property
    def sent_bye(self) -> bool:
        """This SIPp hung up (sent BYE)."""
        return any(m.method == "BYE" and m.sent for m in self.messages())

    def wait_for_hangup(self, timeout: float) -> Role:
        """Wait for a BYE in either direction; returns who sent it."""
        self.wait_for_message(lambda m: m.method == "BYE", timeout, "BYE")
        who = self.bye_from
        assert who is not None
        return who

    @property
    def final_status(self) -> int | None:
        """The final response (>= 200) to the INVITE, None while there is none."""
        finals = [
            m for m in self.messages() if (m.status or 0) >= 200 and m.cseq_method == "INVITE"
        ]
        return finals[0].status if finals else None

    def recording(self) -> Recording:
        """The RTP captured at this SIPp's media port so far (needs ``record=True``)."""
        if self.capture is None:
            raise RuntimeError(f"{self.process.name} was started without record=True")
        return self.capture.recording()

    def stats(self) -> dict[str, str]:
        """The last row of SIPp's ``-trace_stat`` file (``SuccessfulCall(C)``, ``FailedCall(C)``…)."""
        path = self.workdir / f"{self.role}.stats.csv"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        if len(lines) < 2:
            return {}
        return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))

    def summary(self) -> str:
        """Messages, exit code and the tails of SIPp's output and error log (for assertions)."""
        flow = [f"  {'>>' if m.sent else '<<'} {m.first_line}" for m in self.messages()]
        errors = self.workdir / f"{self.role}.errors.log"
        err = errors.read_text(errors="replace")[-2000:] if errors.exists() else ""
        return "\n".join(
            [f"{self.process.name} exit={self.exit_code}", *flow, self.process.tail(15), err]
        )
