"""The SIPp phone's keypad (``convoi.devstack.sipp.keypad``): keys pressed as RFC 4733
telephone-events in the RTP it plays, and keys read back from the RTP it receives.

The ``server`` test calls a SIPp callee that presses keys from a SIPp caller over loopback (ports
of ``tests/test_sipp.py``; needs sipp, tcpdump and root).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from convoi.devstack.sipp import Behaviour, CallerPlan, Recording
from convoi.devstack.sipp.keypad import (
    KEY_GAP_S,
    KEY_TONE_S,
    TELEPHONE_EVENT,
    event_payload,
    key_schedule,
    received_keys,
    with_key_presses,
)
from convoi.devstack.sipp.rtp import PCMA, RATE, RtpPacket, read_rtp_pcap, speech_packets
from convoi.devstack.sipp.scenarios import render_callee
from tests.test_sipp import _call, sipp_ready

__all__ = ["sipp_ready"]  # the fixture, used by name below


def test_event_payload_is_rfc4733() -> None:
    assert event_payload("1", duration=800, end=False) == b"\x01\x0a\x03\x20"
    assert event_payload("#", duration=1280, end=True) == b"\x0b\x8a\x05\x00"
    assert event_payload("*", duration=160, end=False)[0] == 10
    assert event_payload("d", duration=160, end=False)[0] == 15
    with pytest.raises(ValueError):
        event_payload("x", duration=160, end=False)


def test_key_schedule_spaces_each_entrys_keys() -> None:
    step = KEY_TONE_S + KEY_GAP_S
    assert key_schedule([(10.0, "12"), (2.0, "#")]) == [(2.0, "#"), (10.0, "1"), (10.0 + step, "2")]
    with pytest.raises(ValueError, match="not a keypad key"):
        key_schedule([(1.0, "1x")])


def test_keys_replace_audio_slot_for_slot_with_one_timestamp_per_key() -> None:
    audio = speech_packets(np.zeros(0, dtype=np.int16), total_s=3.0)
    stream = with_key_presses(audio, key_schedule([(1.0, "42")]))
    assert len(stream) == len(audio) == 150
    assert [p.sequence for p in stream] == [p.sequence for p in audio]  # one sequence, one clock
    assert [p.arrival for p in stream] == [p.arrival for p in audio]
    events = [p for p in stream if p.payload_type == TELEPHONE_EVENT]
    tone = round(KEY_TONE_S * 50)
    assert len(events) == 2 * tone
    four, two = events[:tone], events[tone:]
    assert four[0].arrival == pytest.approx(1.0) and four[0].timestamp == RATE  # 1 s in
    assert two[0].arrival == pytest.approx(1.0 + KEY_TONE_S + KEY_GAP_S)
    for key in (four, two):
        assert len({p.timestamp for p in key}) == 1
        assert [p.marker for p in key] == [True] + [False] * (tone - 1)
        ends = [bool(p.payload[1] & 0x80) for p in key]
        assert ends == [False] * (tone - 3) + [True] * 3  # the end, sent three times
        durations = [struct.unpack("!H", p.payload[2:4])[0] for p in key]
        assert durations == sorted(durations) and durations[-1] == durations[-3]
    assert {p.payload[0] for p in four} == {4} and {p.payload[0] for p in two} == {2}
    assert all(p.payload_type == PCMA for p in stream if p not in events)


def test_keys_outside_the_stream_or_overlapping_are_refused() -> None:
    audio = speech_packets(np.zeros(0, dtype=np.int16), total_s=1.0)
    with pytest.raises(ValueError, match="past the end"):
        with_key_presses(audio, [(0.95, "1")])
    with pytest.raises(ValueError, match="overlaps"):
        with_key_presses(audio, [(0.1, "1"), (0.15, "2")])


def test_received_keys_are_one_per_timestamp_in_arrival_order() -> None:
    def pkt(at: float, ts: int, key: str, end: bool, ssrc: int = 7) -> RtpPacket:
        payload = event_payload(key, duration=160, end=end)
        return RtpPacket(at, TELEPHONE_EVENT, 0, ts, ssrc, False, payload)

    packets = [
        pkt(1.0, 800, "4", False),
        pkt(1.02, 800, "4", False),
        RtpPacket(1.03, PCMA, 1, 960, 7, False, b"\xd5" * 160),
        pkt(1.5, 4800, "2", False),
        pkt(1.1, 800, "4", True),
        pkt(1.52, 4800, "2", False),  # the end of this key was lost
        pkt(1.7, 800, "9", False, ssrc=8),  # another stream
    ]
    keys = received_keys(packets)
    assert [(k.key, k.ended) for k in keys] == [("4", True), ("2", False), ("9", False)]
    assert Recording(packets, np.zeros(0, dtype=np.int16)).keys == "429"
    assert received_keys(packets, payload_type=96) == []


def test_a_callee_that_presses_keys_plays_them_in_its_pcap(tmp_path: Path) -> None:
    behaviour = Behaviour.answer_talk("", keys=((1.0, "123#"),))
    text = render_callee(behaviour, tmp_path, hold_s=5).read_text()
    assert "presses 123# at 1s" in text and "a=rtpmap:101 telephone-event/8000" in text
    assert Recording(read_rtp_pcap(tmp_path / "callee_answer_talk.pcap"), np.zeros(0)).keys == (
        "123#"
    )


@pytest.mark.server
def test_keys_the_callee_presses_reach_the_caller(tmp_path: Path, sipp_ready: None) -> None:
    _callee, caller = _call(
        tmp_path,
        Behaviour.answer_talk("", keys=((0.5, "123#"), (2.5, "42"))),
        CallerPlan.answered(hangup_after_s=4.5),
    )
    heard = caller.recording()
    assert heard.keys == "123#42"
    events = heard.key_events()
    assert all(e.ended for e in events)
    starts = [e.arrival - events[0].arrival for e in events]
    step = KEY_TONE_S + KEY_GAP_S
    assert starts == pytest.approx([0, step, 2 * step, 3 * step, 2.0, 2.0 + step], abs=0.05)
