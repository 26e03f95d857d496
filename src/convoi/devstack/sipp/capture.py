"""What the phone hears: RTP captured by tcpdump on loopback, decoded and measured.

The phone's SDP advertises its SIPp media port, and SIPp sends its own RTP from that port too
(symmetric RTP, as livekit-sip expects), so the packets to that port are exactly what the bridge
sends the callee. ``tcpdump -i lo udp and dst port P`` records them packet-buffered (``-U``) into a
pcap that can be read while the call runs; :class:`Recording` decodes it to 16-bit 8 kHz PCM and
splits it into speech segments the way the simulated web caller measures agent audio (frame RMS
against :data:`~convoi.devstack.audio.SPEECH_RMS_THRESHOLD`, a segment ends after
``end_silence_ms`` of quiet). The keys the bridge pressed on the phone come in the same stream
as telephone-events (:meth:`Recording.key_events`, :attr:`Recording.keys`).
"""

from __future__ import annotations

import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoi.devstack.audio import SPEECH_RMS_THRESHOLD, rms
from convoi.devstack.harness import ManagedProcess
from convoi.devstack.sipp.keypad import TELEPHONE_EVENT, TelephoneEvent, received_keys
from convoi.devstack.sipp.rtp import PCMA, RATE, RtpPacket, decode_pcma, read_rtp_pcap

__all__ = ["Recording", "RtpCapture", "SpeechSegment", "speech_segments"]


@dataclass(frozen=True)
class SpeechSegment:
    """One stretch of speech: loud frames with gaps shorter than ``end_silence_ms``.

    ``start_s``/``end_s`` are offsets into the decoded recording (start of the first loud frame,
    end of the last one); ``start_sample``/``end_sample`` index :attr:`Recording.pcm`.
    """

    start_sample: int
    end_sample: int
    rate: int
    rms: float
    peak_rms: float

    @property
    def start_s(self) -> float:
        """Offset of the first loud frame, in seconds."""
        return self.start_sample / self.rate

    @property
    def end_s(self) -> float:
        """Offset of the end of the last loud frame, in seconds."""
        return self.end_sample / self.rate

    @property
    def duration_s(self) -> float:
        """Length of the segment in seconds."""
        return (self.end_sample - self.start_sample) / self.rate


def speech_segments(
    pcm: np.ndarray,
    rate: int = RATE,
    *,
    threshold: float = SPEECH_RMS_THRESHOLD,
    end_silence_ms: int = 700,
    frame_ms: int = 20,
) -> list[SpeechSegment]:
    """Split int16 ``pcm`` into speech segments (frame RMS at or above ``threshold``)."""
    frame = max(1, rate * frame_ms // 1000)
    levels = [rms(pcm[i : i + frame]) for i in range(0, pcm.size - frame + 1, frame)]
    gap_frames = max(1, end_silence_ms // frame_ms)
    segments: list[SpeechSegment] = []
    start: int | None = None
    last = 0
    for i, level in enumerate(levels + [0.0] * gap_frames):
        if level >= threshold:
            start = i if start is None else start
            last = i
        elif start is not None and i - last >= gap_frames:
            seg = pcm[start * frame : (last + 1) * frame]
            peak = max(levels[start : last + 1])
            segments.append(SpeechSegment(start * frame, (last + 1) * frame, rate, rms(seg), peak))
            start = None
    return segments


@dataclass(frozen=True)
class Recording:
    """Decoded RTP (PCMA) of one capture; times are epoch seconds of packet arrival."""

    packets: list[RtpPacket]
    pcm: np.ndarray
    rate: int = RATE

    @classmethod
    def from_pcap(cls, path: Path, *, dst_port: int | None = None) -> Recording:
        """Read and decode a pcap (only packets to ``dst_port`` when given)."""
        packets = read_rtp_pcap(path, dst_port=dst_port)
        return cls(packets, decode_pcma(packets))

    @property
    def started_at(self) -> float | None:
        """Arrival time of the first audio packet (sample 0 of :attr:`pcm`)."""
        audio = [p for p in self.packets if p.payload_type == PCMA]
        return audio[0].arrival if audio else None

    @property
    def duration_s(self) -> float:
        """Length of the decoded audio in seconds."""
        return self.pcm.size / self.rate

    def segments(
        self,
        *,
        threshold: float = SPEECH_RMS_THRESHOLD,
        end_silence_ms: int = 700,
        frame_ms: int = 20,
    ) -> list[SpeechSegment]:
        """:func:`speech_segments` of this recording."""
        return speech_segments(
            self.pcm,
            self.rate,
            threshold=threshold,
            end_silence_ms=end_silence_ms,
            frame_ms=frame_ms,
        )

    def first_audio_s(self, threshold: float = SPEECH_RMS_THRESHOLD) -> float | None:
        """Offset of the first 20 ms frame with speech energy, if any."""
        found = self.segments(threshold=threshold, end_silence_ms=20)
        return found[0].start_s if found else None

    def first_audio_at(self, threshold: float = SPEECH_RMS_THRESHOLD) -> float | None:
        """Epoch time at which the first loud frame arrived (start + offset), if any."""
        offset, start = self.first_audio_s(threshold), self.started_at
        return None if offset is None or start is None else start + offset

    def key_events(self, payload_type: int = TELEPHONE_EVENT) -> list[TelephoneEvent]:
        """The keys received as RFC 4733 telephone-events of ``payload_type``, in order."""
        return received_keys(self.packets, payload_type=payload_type)

    @property
    def keys(self) -> str:
        """The keys received (telephone-event 101), in order, e.g. ``"42"``."""
        return "".join(event.key for event in self.key_events())

    def write_wav(self, path: Path) -> Path:
        """The decoded audio as a 16-bit mono WAV file (for listening to a failed test)."""
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(self.pcm.astype(np.int16).tobytes())
        return path


class RtpCapture:
    """tcpdump on loopback for the UDP packets sent to one port (needs root or CAP_NET_RAW)."""

    def __init__(self, port: int, pcap_path: Path, *, interface: str = "lo") -> None:
        self.port = port
        self.pcap_path = pcap_path
        binary = shutil.which("tcpdump")
        if binary is None:
            raise RuntimeError("tcpdump is not installed (Debian package tcpdump)")
        argv = [binary, "-i", interface, "-n", "-U", "--immediate-mode", "-s", "0", "-Z", "root"]
        argv += ["-w", str(pcap_path), f"udp and dst port {port}"]
        self.process = ManagedProcess("tcpdump", argv, pcap_path.with_suffix(".tcpdump.log"))

    def start(self, timeout: float = 10.0) -> RtpCapture:
        """Start tcpdump and wait until it captures ("listening on" in its log)."""
        self.pcap_path.parent.mkdir(parents=True, exist_ok=True)
        self.process.start()
        self.process.wait_for(lambda: "listening on" in self.process.text(), timeout, "capture")
        return self

    def recording(self) -> Recording:
        """What was captured so far (the pcap is written packet by packet)."""
        return Recording.from_pcap(self.pcap_path, dst_port=self.port)

    def stop(self) -> Recording:
        """Stop tcpdump (it flushes on SIGTERM) and return the whole recording."""
        self.process.stop(timeout=5.0)
        return self.recording()
