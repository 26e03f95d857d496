"""A SIPp UAC that calls a SIP address: exercises the callees without livekit-sip."""

from __future__ import annotations

from pathlib import Path

from convoi.devstack.sipp.process import SippPhone
from convoi.devstack.sipp.scenarios import CallerPlan, render_caller

__all__ = ["SippCaller"]


class SippCaller(SippPhone):
    """SIPp placing one call to ``target`` (``host:port``) and following a :class:`CallerPlan`.

    The INVITE offers PCMA, PCMU and telephone-event; an answered call plays the plan's text as
    PCMA RTP from ``media_port`` and, with ``record``, captures the RTP sent to that port. SIPp's
    exit code is 0 only when the callee did exactly what the plan expects.
    """

    role = "caller"

    def __init__(
        self,
        target: str,
        plan: CallerPlan,
        *,
        workdir: Path,
        sip_port: int = 5091,
        media_port: int = 16004,
        host: str = "127.0.0.1",
        record: bool = True,
        hold_s: float = 60.0,
    ) -> None:
        self.plan = plan
        workdir = workdir.resolve()
        scenario = render_caller(plan, workdir, hold_s=hold_s)
        super().__init__(
            scenario,
            workdir=workdir,
            sip_port=sip_port,
            media_port=media_port,
            host=host,
            remote=target,
            record=record and plan.expect == "answer",
            timeout_s=hold_s + 60.0,
        )
