"""The phone the agent calls: SIPp as a UAS with one of the :class:`Behaviour` s."""

from __future__ import annotations

from pathlib import Path

from convoi.devstack.sipp.process import SipMessage, SippPhone
from convoi.devstack.sipp.scenarios import Behaviour, render_callee

__all__ = ["SippCallee"]


class SippCallee(SippPhone):
    """SIPp answering (or refusing) one call on ``host:sip_port``, RTP on ``media_port``.

    Use as a context manager, or :meth:`start` / :meth:`stop`::

        with SippCallee(Behaviour.answer_talk("Hello?", delay_s=3), workdir=tmp) as phone:
            ...  # create a trunk to phone.address and dial
            phone.wait_for_call(10)
            phone.wait_for_hangup(60)
            heard = phone.recording()  # what the bridge sent the callee

    Answering behaviours send RTP (silence, or the espeak-ng speech) for ``hold_s`` after the ACK
    and, with ``record``, capture the RTP sent to ``media_port``. SIPp ends with the call.
    """

    role = "callee"

    def __init__(
        self,
        behaviour: Behaviour,
        *,
        workdir: Path,
        sip_port: int = 5090,
        media_port: int = 16000,
        host: str = "127.0.0.1",
        record: bool = True,
        hold_s: float = 120.0,
    ) -> None:
        self.behaviour = behaviour
        workdir = workdir.resolve()
        scenario = render_callee(behaviour, workdir, hold_s=hold_s)
        super().__init__(
            scenario,
            workdir=workdir,
            sip_port=sip_port,
            media_port=media_port,
            host=host,
            record=record and behaviour.answers,
            timeout_s=hold_s + 60.0,
        )

    def wait_for_call(self, timeout: float) -> SipMessage:
        """Wait for the INVITE."""
        return self.wait_for_message(
            lambda m: not m.sent and m.method == "INVITE", timeout, "INVITE"
        )

    def wait_for_answer(self, timeout: float) -> SipMessage:
        """Wait for the ACK of our 200 OK (the call is up; our RTP starts now)."""
        return self.wait_for_message(lambda m: not m.sent and m.method == "ACK", timeout, "ACK")

    def wait_for_cancel(self, timeout: float) -> SipMessage:
        """Wait for the caller's CANCEL (ring_no_answer)."""
        return self.wait_for_message(
            lambda m: not m.sent and m.method == "CANCEL", timeout, "CANCEL"
        )
