"""The phone is SIPp: callee scenarios for tests over the real LiveKit SIP bridge.

:class:`SippCallee` runs SIPp as the callee (UAS) on ``127.0.0.1:<sip_port>`` with one
:class:`Behaviour`: ``answer_talk`` (answers with PCMA + telephone-event, says espeak-ng speech as
RTP after a delay), ``busy`` (486), ``ring_no_answer`` (180 until CANCEL), ``reject`` (603),
``not_found`` (404), ``answer_then_hangup`` (BYE from the callee) and ``answer_and_stay`` (until
the other side's BYE). It tells what happened from SIPp's message trace (INVITE, 200, ACK, who sent
BYE, exit code, statistics) and records the RTP sent to the callee with tcpdump
(:class:`Recording`: decoded 8 kHz PCM, speech segments, first audio, the keys pressed on the
phone as telephone-events). ``answer_talk`` can press keys too (RFC 4733, :mod:`.keypad`).

:class:`SippCaller` is the matching UAC the package's own tests use. Both need ``sipp`` (Debian
``sip-tester``, built with PCAP) and, for media, root (SIPp replays pcaps over raw sockets;
tcpdump captures on ``lo``).
"""

from __future__ import annotations

from convoi.devstack.sipp.callee import SippCallee
from convoi.devstack.sipp.caller import SippCaller
from convoi.devstack.sipp.capture import Recording, RtpCapture, SpeechSegment, speech_segments
from convoi.devstack.sipp.keypad import TelephoneEvent
from convoi.devstack.sipp.process import Role, SipMessage, SippPhone
from convoi.devstack.sipp.scenarios import Behaviour, BehaviourName, CallerPlan

__all__ = [
    "Behaviour",
    "BehaviourName",
    "CallerPlan",
    "Recording",
    "Role",
    "RtpCapture",
    "SipMessage",
    "SippCallee",
    "SippCaller",
    "SippPhone",
    "SpeechSegment",
    "TelephoneEvent",
    "speech_segments",
]
