"""What the SIPp phone does on a call, and the scenario files that make it do so.

A :class:`Behaviour` names one callee behaviour; :func:`render_callee` turns it into a SIPp
scenario XML file (plus the pcap it plays) from the templates next to this module.
:func:`render_caller` does the same for the test caller (a UAC) that exercises the callees
without livekit-sip. Templates use ``{{name}}`` placeholders; response codes are written into
the file literally because SIPp cannot take them from a variable (one file per code).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from convoi.devstack.audio import synthesize
from convoi.devstack.sipp.keypad import key_schedule, with_key_presses
from convoi.devstack.sipp.rtp import RATE, speech_packets, write_rtp_pcap

__all__ = [
    "REFER_STATUS_LINES",
    "STATUS_LINES",
    "Behaviour",
    "BehaviourName",
    "CallerPlan",
    "render_callee",
    "render_caller",
    "speech_pcap",
]

BehaviourName = Literal[
    "answer_talk",
    "busy",
    "ring_no_answer",
    "reject",
    "not_found",
    "answer_then_hangup",
    "answer_and_stay",
]

STATUS_LINES = {
    404: "SIP/2.0 404 Not Found",
    486: "SIP/2.0 486 Busy Here",
    603: "SIP/2.0 603 Decline",
}
"""Final responses the phone can give, as SIPp must see them: literal status lines."""

REFER_STATUS_LINES = {
    403: "SIP/2.0 403 Forbidden",
    503: "SIP/2.0 503 Service Unavailable",
}
"""How the phone can refuse a REFER (``refer_status``; 202 accepts it)."""


@dataclass(frozen=True)
class Behaviour:
    """One way the callee handles the INVITE. Build it with the class methods."""

    name: BehaviourName
    status: int | None = None
    """Final error response (busy/reject/not_found)."""
    text: str = ""
    """What the callee says after answering (answer_talk)."""
    delay_s: float = 0.0
    """Silence between the ACK and the speech (lets the agent's greeting play first)."""
    hangup_after_s: float | None = None
    """The callee sends BYE this long after the ACK; None waits for the other side's BYE."""
    then: tuple[tuple[float, str], ...] = ()
    """Further lines: ``(silence_s, text)``, each said ``silence_s`` after the previous one."""
    keys: tuple[tuple[float, str], ...] = ()
    """Keys pressed: ``(at_s, keys)`` presses ``keys`` one after another from ``at_s`` after the
    ACK, as RFC 4733 telephone-events (see :mod:`~convoi.devstack.sipp.keypad`)."""
    refer_status: int | None = None
    """answer_talk: how a REFER (a cold transfer) is answered: 202 accepts it (then NOTIFY with
    ``SIP/2.0 200 OK`` and wait for the BYE), a :data:`REFER_STATUS_LINES` code refuses it and
    the call goes on; None expects no REFER."""

    @classmethod
    def answer_talk(
        cls,
        text: str,
        *,
        delay_s: float = 0.0,
        hangup_after_s: float | None = None,
        then: tuple[tuple[float, str], ...] = (),
        keys: tuple[tuple[float, str], ...] = (),
        refer_status: int | None = None,
    ) -> Behaviour:
        """Answer (PCMA), say ``text`` after ``delay_s`` (and the ``then`` lines after it), press
        the ``keys`` (``(at_s, keys)`` after the ACK), then stay (or hang up after a while); with
        ``refer_status``, answer the REFER that comes."""
        if refer_status not in (None, 202, *REFER_STATUS_LINES):
            raise ValueError(f"no scenario answers a REFER with {refer_status}")
        return cls(
            "answer_talk",
            text=text,
            delay_s=delay_s,
            hangup_after_s=hangup_after_s,
            then=then,
            keys=keys,
            refer_status=refer_status,
        )

    @classmethod
    def busy(cls) -> Behaviour:
        """Answer the INVITE with 486 Busy Here."""
        return cls("busy", status=486)

    @classmethod
    def ring_no_answer(cls) -> Behaviour:
        """180 Ringing until the caller sends CANCEL (then 487)."""
        return cls("ring_no_answer")

    @classmethod
    def reject(cls) -> Behaviour:
        """Answer the INVITE with 603 Decline."""
        return cls("reject", status=603)

    @classmethod
    def not_found(cls) -> Behaviour:
        """Answer the INVITE with 404 Not Found."""
        return cls("not_found", status=404)

    @classmethod
    def answer_then_hangup(cls, after_seconds: float) -> Behaviour:
        """Answer, keep silent, send BYE ``after_seconds`` after the ACK."""
        return cls("answer_then_hangup", hangup_after_s=after_seconds)

    @classmethod
    def answer_and_stay(cls) -> Behaviour:
        """Answer, keep silent and stay until the other side sends BYE."""
        return cls("answer_and_stay")

    @property
    def answers(self) -> bool:
        """True when the call is answered (200 OK with SDP, RTP both ways)."""
        return self.name in ("answer_talk", "answer_then_hangup", "answer_and_stay")

    def describe(self) -> str:
        """One line for logs and the scenario file's comment."""
        parts: list[str] = [self.name]
        if self.status is not None:
            parts.append(STATUS_LINES[self.status].removeprefix("SIP/2.0 "))
        if self.text:
            parts.append(f"says {self.text!r} after {self.delay_s:g}s")
        for at_s, keys in self.keys:
            parts.append(f"presses {keys} at {at_s:g}s")
        if self.hangup_after_s is not None:
            parts.append(f"hangs up {self.hangup_after_s:g}s after the ACK")
        if self.refer_status is not None:
            parts.append(f"answers REFER with {self.refer_status}")
        return ", ".join(parts)


@dataclass(frozen=True)
class CallerPlan:
    """What the test caller (UAC) expects and does; build with the class methods."""

    expect: Literal["answer", "status", "ringing"]
    status: int | None = None
    hangup_after_s: float | None = None
    """Send BYE this long after the ACK; None waits for the callee's BYE."""
    cancel_after_s: float = 1.0
    text: str = ""
    delay_s: float = 0.0

    @classmethod
    def answered(
        cls, *, text: str = "", delay_s: float = 0.0, hangup_after_s: float | None = None
    ) -> CallerPlan:
        """Expect 200 OK, ACK it, play ``text`` after ``delay_s``, then BYE (or wait for one)."""
        return cls("answer", text=text, delay_s=delay_s, hangup_after_s=hangup_after_s)

    @classmethod
    def rejected(cls, status: int) -> CallerPlan:
        """Expect the final error ``status`` and ACK it."""
        return cls("status", status=status)

    @classmethod
    def ringing(cls, cancel_after_s: float) -> CallerPlan:
        """Expect 180 Ringing, CANCEL after ``cancel_after_s``, then 200 (CANCEL) and 487."""
        return cls("ringing", cancel_after_s=cancel_after_s)


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def _fill(text: str, **values: str) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise ValueError(f"unfilled placeholder in scenario: {text[text.index('{{') :][:40]!r}")
    return text


def speech_pcap(
    path: Path,
    text: str,
    *,
    lead_s: float = 0.0,
    total_s: float,
    voice: str = "en-us",
    then: tuple[tuple[float, str], ...] = (),
    keys: tuple[tuple[float, str], ...] = (),
) -> Path:
    """espeak-ng ``text`` at 8 kHz as an RTP/PCMA pcap: ``lead_s`` silence, speech, silence (and
    each ``then`` line after its own silence), with the ``keys`` (``(at_s, keys)``) pressed as
    telephone-events."""
    parts = [synthesize(text, RATE, voice=voice) if text else np.zeros(0, dtype=np.int16)]
    for silence_s, line in then:
        parts += [
            np.zeros(round(silence_s * RATE), dtype=np.int16),
            synthesize(line, RATE, voice=voice),
        ]
    packets = speech_packets(np.concatenate(parts), lead_s=lead_s, total_s=total_s)
    return write_rtp_pcap(path, with_key_presses(packets, key_schedule(keys)))


def _ms(seconds: float) -> str:
    return str(max(0, round(seconds * 1000)))


def render_callee(behaviour: Behaviour, folder: Path, *, hold_s: float = 120.0) -> Path:
    """Write ``callee_<name>.xml`` (and its pcap) into ``folder``; returns the scenario path.

    Answering behaviours send RTP for ``hold_s`` seconds after the ACK (silence around the speech),
    so the bridge's no-media timeout does not end a call the test keeps open.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = f"callee_{behaviour.name}"
    values = {"name": name, "description": behaviour.describe()}
    if behaviour.answers:
        pcap = speech_pcap(
            folder / f"{name}.pcap",
            behaviour.text,
            lead_s=behaviour.delay_s,
            total_s=hold_s,
            then=behaviour.then,
            keys=behaviour.keys,
        )
        ack_actions, ending = "", _template("end_wait_bye.xml")
        if behaviour.hangup_after_s is not None:
            ack_actions = _template("ack_keep_dialog.xml")
            ending = _fill(_template("end_callee_bye.xml"), hangup_ms=_ms(behaviour.hangup_after_s))
        elif behaviour.refer_status is not None:
            ack_actions, ending = _refer_handling(behaviour.refer_status)
        text = _fill(
            _template("callee_answer.xml"),
            pcap=str(pcap),
            ack_actions=ack_actions,
            ending=ending,
            **values,
        )
    elif behaviour.status is not None:
        text = _fill(
            _template("callee_reject.xml"), status_line=STATUS_LINES[behaviour.status], **values
        )
    else:
        text = _fill(_template("callee_ring.xml"), **values)
    path = folder / f"{name}.xml"
    path.write_text(text, encoding="utf-8")
    return path


def _refer_handling(status: int) -> tuple[str, str]:
    """ACK actions and the scenario's ending for a callee that receives a REFER."""
    if status == 202:  # our NOTIFY needs the dialog's From/To
        ending = _template("end_refer_accept.xml") + _template("end_wait_bye.xml")
        return _template("ack_keep_dialog.xml"), ending
    refer = _fill(_template("end_refer_reject.xml"), status_line=REFER_STATUS_LINES[status])
    return "", refer + _template("end_wait_bye.xml")


def render_caller(
    plan: CallerPlan, folder: Path, *, hold_s: float = 60.0, voice: str = "en-us"
) -> Path:
    """Write ``caller_<expect>.xml`` (and its pcap) into ``folder``; returns the scenario path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"caller_{plan.expect}" + (f"_{plan.status}" if plan.status else "")
    values = {"name": name, "description": f"expects {plan.expect}", "invite": _invite()}
    if plan.expect == "answer":
        pcap = speech_pcap(
            folder / f"{name}.pcap", plan.text, lead_s=plan.delay_s, total_s=hold_s, voice=voice
        )
        if plan.hangup_after_s is None:
            ending = _template("end_wait_bye.xml")
        else:
            ending = _fill(_template("end_caller_bye.xml"), hangup_ms=_ms(plan.hangup_after_s))
        text = _fill(_template("caller_answered.xml"), pcap=str(pcap), ending=ending, **values)
    elif plan.expect == "status":
        text = _fill(_template("caller_rejected.xml"), status=str(plan.status), **values)
    else:
        text = _fill(_template("caller_cancel.xml"), cancel_ms=_ms(plan.cancel_after_s), **values)
    path = folder / f"{name}.xml"
    path.write_text(text, encoding="utf-8")
    return path


def _invite() -> str:
    return _template("caller_invite.xml").rstrip("\n")
