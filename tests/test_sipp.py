"""The SIPp phone (``convoi.devstack.sipp``): G.711/RTP/pcap helpers, scenario rendering, and
every callee behaviour called by a SIPp UAC over loopback (no livekit-sip needed).

The ``server`` tests start real SIPp processes (callee on 5090/16000, caller on 5091/16004) and
tcpdump; they need ``sipp`` with PCAP support, ``tcpdump`` and root (raw sockets, capture on lo).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from convoi.devstack.audio import SPEECH_RMS_THRESHOLD, rms, synthesize
from convoi.devstack.sipp import Behaviour, CallerPlan, Recording, SippCallee, SippCaller
from convoi.devstack.sipp.capture import speech_segments
from convoi.devstack.sipp.process import read_messages, udp_port_bound
from convoi.devstack.sipp.rtp import (
    PCMA,
    RATE,
    RtpPacket,
    alaw_decode,
    alaw_encode,
    decode_pcma,
    read_rtp_pcap,
    write_rtp_pcap,
    write_speech_pcap,
)
from convoi.devstack.sipp.scenarios import STATUS_LINES, render_callee, render_caller

CALLEE_SIP, CALLEE_MEDIA = 5090, 16000
CALLER_SIP, CALLER_MEDIA = 5091, 16004


def _tone(seconds: float, level: float = 6000.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * level).astype(np.int16)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


# --------------------------------------------------------------------------------------------
# G.711, RTP, pcap, analysis (no processes)
# --------------------------------------------------------------------------------------------


def test_alaw_matches_g711_reference_points_and_round_trips_speech_levels() -> None:
    assert alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)) == b"\xd5\x55\xaa\x2a"
    assert alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    tone = _tone(1.0)
    decoded = alaw_decode(alaw_encode(tone))
    snr_db = 20 * np.log10(rms(tone) / rms((tone.astype(np.int32) - decoded).astype(np.int16)))
    assert snr_db > 30


def test_speech_pcap_is_one_pcma_stream_20ms_per_packet(tmp_path: Path) -> None:
    pcm = _tone(0.5)
    path = write_speech_pcap(tmp_path / "s.pcap", pcm, lead_s=0.2, total_s=1.0)
    packets = read_rtp_pcap(path)
    assert len(packets) == 50
    assert {p.payload_type for p in packets} == {PCMA}
    assert [p.sequence for p in packets] == list(range(50))
    assert [p.timestamp for p in packets] == [160 * i for i in range(50)]
    assert [p.marker for p in packets[:2]] == [True, False]
    assert np.allclose(np.diff([p.arrival for p in packets]), 0.02)
    decoded = decode_pcma(packets)
    assert decoded.size == RATE
    assert rms(decoded[:1600]) == pytest.approx(8.0)  # A-law's quietest level
    assert rms(decoded[1600:5600]) > 4000


def test_decode_places_packets_by_timestamp_and_restarts_on_a_new_ssrc(tmp_path: Path) -> None:
    payload = alaw_encode(_tone(0.02))
    first = [RtpPacket(i * 0.02, PCMA, i, 160 * i, 1, False, payload) for i in range(5) if i != 2]
    second = [
        RtpPacket(1.0 + i * 0.02, PCMA, 7 + i, 99_000 + 160 * i, 2, False, payload)
        for i in range(2)
    ]
    dtmf = RtpPacket(0.5, 101, 9, 0, 1, False, b"\x01\x00\x00\xa0")
    path = write_rtp_pcap(tmp_path / "c.pcap", [*first, dtmf, *second], dst=("127.0.0.1", 16000))
    packets = read_rtp_pcap(path, dst_port=16000)
    assert len(packets) == 7 and read_rtp_pcap(path, dst_port=16001) == []
    pcm = decode_pcma(packets)
    assert pcm.size == RATE + 320  # the second SSRC starts at its arrival, 1 s in
    assert rms(pcm[320:480]) == 0.0  # the lost packet is silence
    assert rms(pcm[480:800]) > 3000 and rms(pcm[RATE:]) > 3000


def test_speech_segments_follow_the_web_callers_rules() -> None:
    pcm = np.concatenate([_silence(0.5), _tone(0.6), _silence(0.3), _tone(0.2), _silence(1.0)])
    pcm = np.concatenate([pcm, _tone(0.4), _silence(0.2)])
    segments = speech_segments(pcm, RATE, end_silence_ms=700)
    assert [(s.start_s, round(s.end_s, 2)) for s in segments] == [(0.5, 1.6), (2.6, 3.0)]
    assert all(s.rms > SPEECH_RMS_THRESHOLD and s.peak_rms >= s.rms for s in segments)
    recording = Recording([RtpPacket(100.0, PCMA, 0, 0, 1, True, b"")], pcm)
    assert recording.first_audio_s() == 0.5
    assert recording.first_audio_at() == 100.5


def test_scenarios_render_literal_codes_and_a_pcma_answer(tmp_path: Path) -> None:
    for behaviour in (Behaviour.busy(), Behaviour.reject(), Behaviour.not_found()):
        assert behaviour.status is not None
        text = render_callee(behaviour, tmp_path).read_text()
        assert STATUS_LINES[behaviour.status] in text and "{{" not in text
    answer = render_callee(Behaviour.answer_then_hangup(2.5), tmp_path, hold_s=3).read_text()
    assert "m=audio [media_port] RTP/AVP 8 101" in answer
    assert "a=rtpmap:101 telephone-event/8000" in answer
    assert '<pause milliseconds="2500"/>' in answer and "BYE [next_url]" in answer
    assert len(read_rtp_pcap(tmp_path / "callee_answer_then_hangup.pcap")) == 150
    stay = render_callee(Behaviour.answer_and_stay(), tmp_path).read_text()
    assert '<recv request="BYE"' in stay and "$peer" not in stay
    ring = render_callee(Behaviour.ring_no_answer(), tmp_path).read_text()
    assert '<recv request="CANCEL"' in ring and "487 Request Terminated" in ring
    caller = render_caller(CallerPlan.rejected(486), tmp_path).read_text()
    assert '<recv response="486"/>' in caller


def test_message_trace_is_parsed_and_an_unfinished_line_ignored(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "2026-01-01\t10:00:00.1\t1.5\tR\tc1\tCSeq:1 INVITE\tINVITE sip:x@127.0.0.1 SIP/2.0\n"
        "2026-01-01\t10:00:00.2\t1.6\tS\tc1\tCSeq:1 INVITE\tSIP/2.0 486 Busy Here\n"
        "2026-01-01\t10:00:00.3\t1.7\tR\tc1\tCSeq:1 ACK\tACK sip:x"
    )
    invite, busy = read_messages(path)
    assert (invite.method, invite.status, invite.sent, invite.at) == ("INVITE", None, False, 1.5)
    assert (busy.method, busy.status, busy.sent, busy.cseq_method) == (None, 486, True, "INVITE")


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp is not installed (Debian package sip-tester)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert udp_port_bound("127.0.0.1", port)
        callee = SippCallee(Behaviour.busy(), workdir=tmp_path, sip_port=port)
        with pytest.raises(RuntimeError, match="already in use"):
            callee.start()
        assert callee.process.proc is None
    assert not udp_port_bound("127.0.0.1", port)


# --------------------------------------------------------------------------------------------
# real SIPp calls over loopback
# --------------------------------------------------------------------------------------------


@pytest.fixture
def sipp_ready() -> None:
    """Skip (with the reason) where SIPp calls cannot run."""
    for binary, package in (("sipp", "sip-tester"), ("tcpdump", "tcpdump")):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (Debian package {package})")
    if os.geteuid() != 0:
        pytest.skip("SIPp plays pcaps over raw sockets and tcpdump captures on lo: needs root")


def _call(
    tmp_path: Path, behaviour: Behaviour, plan: CallerPlan, *, hold_s: float = 10.0
) -> tuple[SippCallee, SippCaller]:
    """One call from a SIPp caller to a SIPp callee; returns both after they ended."""
    callee = SippCallee(
        behaviour,
        workdir=tmp_path / "callee",
        sip_port=CALLEE_SIP,
        media_port=CALLEE_MEDIA,
        hold_s=hold_s,
    )
    caller = SippCaller(
        callee.address,
        plan,
        workdir=tmp_path / "caller",
        sip_port=CALLER_SIP,
        media_port=CALLER_MEDIA,
        hold_s=hold_s,
    )
    with callee, caller:
        callee.wait_for_call(10)
        assert caller.wait_for_exit(30) == 0, caller.summary()
        assert callee.wait_for_exit(10) == 0, callee.summary()
    assert not callee.terminated and not caller.terminated
    return callee, caller


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.size, b.size)
    return float(np.corrcoef(a[:n].astype(np.float64), b[:n].astype(np.float64))[0, 1])


@pytest.mark.server
def test_answer_talk_speaks_and_records_both_ways(tmp_path: Path, sipp_ready: None) -> None:
    callee_says, caller_says = (
        "Hello, this is the callee speaking.",
        "Hi, I am calling about a table.",
    )
    callee, caller = _call(
        tmp_path,
        Behaviour.answer_talk(callee_says, delay_s=0.6),
        CallerPlan.answered(text=caller_says, hangup_after_s=4.0),
    )
    assert callee.final_status == 200 and caller.final_status == 200
    assert callee.bye_from == "caller" and callee.received_bye and not callee.sent_bye
    assert callee.stats()["SuccessfulCall(C)"] == "1"

    # what the callee said reached the caller: speech energy 0.6 s in, as long as the speech
    heard = caller.recording()
    spoken = synthesize(callee_says, RATE)
    segments = heard.segments()
    assert len(segments) == 1, segments
    source = speech_segments(spoken, RATE)  # espeak-ng pads its speech with silence
    assert segments[0].start_s == pytest.approx(0.6 + source[0].start_s, abs=0.05)
    assert segments[0].rms > SPEECH_RMS_THRESHOLD
    assert segments[0].duration_s == pytest.approx(source[-1].end_s - source[0].start_s, abs=0.05)
    start = round(0.6 * RATE)
    assert _correlation(heard.pcm[start:], alaw_decode(alaw_encode(spoken))) > 0.99

    # what the caller said was recorded by the callee and decodes to the same speech
    recorded = callee.recording()
    assert recorded.duration_s == pytest.approx(4.0, abs=0.5)
    assert recorded.first_audio_s() is not None and recorded.first_audio_s() < 0.3
    assert (
        _correlation(recorded.pcm, alaw_decode(alaw_encode(synthesize(caller_says, RATE)))) > 0.99
    )
    assert recorded.write_wav(tmp_path / "callee-heard.wav").stat().st_size > 44


@pytest.mark.server
@pytest.mark.parametrize(
    ("behaviour", "status"),
    [(Behaviour.busy(), 486), (Behaviour.reject(), 603), (Behaviour.not_found(), 404)],
    ids=["busy", "reject", "not_found"],
)
def test_refusals_answer_with_their_status(
    tmp_path: Path, sipp_ready: None, behaviour: Behaviour, status: int
) -> None:
    callee, caller = _call(tmp_path, behaviour, CallerPlan.rejected(status))
    assert callee.final_status == status and caller.final_status == status
    assert [m.first_line for m in callee.messages()][-1].startswith("ACK ")
    assert callee.capture is None  # nothing to record on a refused call


@pytest.mark.server
def test_ring_no_answer_rings_until_cancel(tmp_path: Path, sipp_ready: None) -> None:
    callee, caller = _call(tmp_path, Behaviour.ring_no_answer(), CallerPlan.ringing(1.0))
    ringing = next(m for m in callee.messages() if m.status == 180)
    cancel = next(m for m in callee.messages() if m.method == "CANCEL" and not m.sent)
    assert cancel.at - ringing.at == pytest.approx(1.0, abs=0.3)
    assert callee.final_status == 487 and caller.final_status == 487
    assert not any(m.status == 200 and m.cseq_method == "INVITE" for m in callee.messages())


@pytest.mark.server
def test_answer_then_hangup_sends_bye_from_the_callee(tmp_path: Path, sipp_ready: None) -> None:
    callee, caller = _call(tmp_path, Behaviour.answer_then_hangup(1.5), CallerPlan.answered())
    assert callee.bye_from == "callee" and caller.bye_from == "callee"
    assert callee.sent_bye and caller.received_bye
    ack = next(m for m in callee.messages() if m.method == "ACK")
    bye = next(m for m in callee.messages() if m.method == "BYE")
    assert bye.at - ack.at == pytest.approx(1.5, abs=0.3)
    # the callee kept sending RTP (silence) while the call was up
    heard = caller.recording()
    assert heard.duration_s == pytest.approx(1.5, abs=0.3) and heard.segments() == []


@pytest.mark.server
def test_answer_and_stay_waits_for_the_other_sides_bye(tmp_path: Path, sipp_ready: None) -> None:
    callee, _caller = _call(
        tmp_path,
        Behaviour.answer_and_stay(),
        CallerPlan.answered(text="Goodbye!", hangup_after_s=2.0),
    )
    assert callee.bye_from == "caller" and callee.received_bye and not callee.sent_bye
    recorded = callee.recording()
    assert len(recorded.segments()) == 1
    assert recorded.segments()[0].duration_s > 0.3  # the whole goodbye arrived before the BYE
