"""G.711 A-law, RTP packets and the pcap files SIPp plays and tcpdump writes.

SIPp's ``play_pcap_audio`` replays the UDP payloads of a pcap file with the file's own timing
(it rewrites addresses and ports, not the RTP header), so :func:`write_speech_pcap` renders
speech as a complete RTP stream: PCMA (payload type 8), 20 ms (160 samples) per packet, one
SSRC, consecutive sequence numbers and timestamps. :func:`read_rtp_pcap` reads what tcpdump
captured back into :class:`RtpPacket` records, and :func:`decode_pcma` turns those into PCM.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "PCMA",
    "RATE",
    "SAMPLES_PER_PACKET",
    "RtpPacket",
    "alaw_decode",
    "alaw_encode",
    "decode_pcma",
    "read_rtp_pcap",
    "speech_packets",
    "write_rtp_pcap",
    "write_speech_pcap",
]

PCMA = 8
"""RTP payload type of G.711 A-law."""
RATE = 8000
"""G.711 sample rate (and RTP clock rate)."""
SAMPLES_PER_PACKET = 160
"""20 ms of G.711 per RTP packet."""

_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def alaw_encode(pcm: np.ndarray) -> bytes:
    """Encode int16 samples as G.711 A-law bytes (ITU-T G.711, as in the classic ``g711.c``)."""
    x = pcm.astype(np.int32) >> 3
    negative = x < 0
    mask = np.where(negative, 0x55, 0xD5)
    x = np.where(negative, -x - 1, x)
    seg = np.searchsorted(_SEG_END, x)  # first segment whose end >= x
    shift = np.where(seg < 2, 1, seg)
    aval = (np.minimum(seg, 7) << 4) | ((x >> shift) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8).tobytes()


def _alaw_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.int16)
    for code in range(256):
        a = code ^ 0x55
        t = (a & 0x0F) << 4
        seg = (a & 0x70) >> 4
        t += 8 if seg == 0 else 0x108
        if seg > 1:
            t <<= seg - 1
        table[code] = t if a & 0x80 else -t
    return table


_ALAW_TO_PCM = _alaw_table()


def alaw_decode(data: bytes) -> np.ndarray:
    """Decode G.711 A-law bytes to int16 samples."""
    return _ALAW_TO_PCM[np.frombuffer(data, dtype=np.uint8)]


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet; ``arrival`` is the capture (or planned send) time in epoch seconds."""

    arrival: float
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes

    def to_bytes(self) -> bytes:
        """The packet as sent on the wire (version 2, no CSRC, no extension)."""
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        header = struct.pack("!BBHII", 0x80, second, self.sequence, self.timestamp, self.ssrc)
        return header + self.payload

    @classmethod
    def parse(cls, data: bytes, arrival: float) -> RtpPacket | None:
        """Parse an RTP packet; None for anything that is not RTP version 2."""
        if len(data) < 12 or data[0] >> 6 != 2:
            return None
        first, second, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10 and len(data) >= offset + 4:  # header extension
            offset += 4 + 4 * struct.unpack("!H", data[offset + 2 : offset + 4])[0]
        end = len(data) - (data[-1] if first & 0x20 else 0)  # padding
        if offset > end:
            return None
        return cls(arrival, second & 0x7F, seq, ts, ssrc, bool(second & 0x80), data[offset:end])


# --------------------------------------------------------------------------------------------
# pcap files (libpcap format, Ethernet link type)
# --------------------------------------------------------------------------------------------

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_LINK_ETHERNET = 1
_LINK_SLL = 113


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _frame(payload: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload`` (UDP checksum 0, which IPv4 allows)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
        bytes(map(int, src[0].split("."))), bytes(map(int, dst[0].split("."))),
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def write_rtp_pcap(
    path: Path,
    packets: Iterable[RtpPacket],
    *,
    src: tuple[str, int] = ("127.0.0.1", 6000),
    dst: tuple[str, int] = ("127.0.0.1", 6002),
) -> Path:
    """Write ``packets`` as UDP datagrams from ``src`` to ``dst`` (SIPp replaces both)."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", _PCAP_MAGIC_US, 2, 4, 0, 0, 65535, _LINK_ETHERNET))
        for pkt in packets:
            frame = _frame(pkt.to_bytes(), src, dst)
            sec, usec = divmod(round(pkt.arrival * 1_000_000), 1_000_000)
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    return path


def speech_packets(
    pcm: np.ndarray,
    *,
    lead_s: float = 0.0,
    total_s: float | None = None,
    ssrc: int = 0x0C0FFEE,
) -> list[RtpPacket]:
    """One RTP/PCMA stream of ``lead_s`` silence, the 8 kHz ``pcm`` and silence up to
    ``total_s``: 20 ms per packet, consecutive sequence numbers and timestamps from 0, arrival
    times from 0 (seconds into the stream).

    The silence is sent as real packets (a phone keeps sending while nobody talks): a bridge that
    hears no RTP for a while hangs up (livekit-sip: 30 s before the first packet, 15 s after one).
    """
    lead = np.zeros(round(lead_s * RATE), dtype=np.int16)
    samples = np.concatenate([lead, pcm.astype(np.int16)])
    if total_s is not None and samples.size < round(total_s * RATE):
        samples = np.pad(samples, (0, round(total_s * RATE) - samples.size))
    if samples.size % SAMPLES_PER_PACKET:
        samples = np.pad(samples, (0, SAMPLES_PER_PACKET - samples.size % SAMPLES_PER_PACKET))
    encoded = alaw_encode(samples)
    packets: list[RtpPacket] = []
    for i in range(samples.size // SAMPLES_PER_PACKET):
        chunk = encoded[i * SAMPLES_PER_PACKET : (i + 1) * SAMPLES_PER_PACKET]
        ts = (i * SAMPLES_PER_PACKET) & 0xFFFFFFFF
        packets.append(RtpPacket(i * 0.02, PCMA, i & 0xFFFF, ts, ssrc, i == 0, chunk))
    return packets


def write_speech_pcap(
    path: Path,
    pcm: np.ndarray,
    *,
    lead_s: float = 0.0,
    total_s: float | None = None,
    ssrc: int = 0x0C0FFEE,
) -> Path:
    """An RTP/PCMA pcap of :func:`speech_packets` (``lead_s`` silence, ``pcm``, silence up to
    ``total_s``)."""
    return write_rtp_pcap(path, speech_packets(pcm, lead_s=lead_s, total_s=total_s, ssrc=ssrc))


def _udp_payload(frame: bytes, link: int) -> tuple[int, bytes] | None:
    """(destination port, UDP payload) of an IPv4/UDP frame, else None."""
    if link == _LINK_ETHERNET:
        offset, ethertype = 14, frame[12:14]
    elif link == _LINK_SLL:
        offset, ethertype = 16, frame[14:16]
    else:
        return None
    if ethertype != b"\x08\x00" or len(frame) < offset + 28 or frame[offset + 9] != 17:
        return None
    udp = offset + 4 * (frame[offset] & 0x0F)
    dport, length = struct.unpack("!HH", frame[udp + 2 : udp + 6])
    return dport, frame[udp + 8 : udp + length]


def read_rtp_pcap(path: Path, *, dst_port: int | None = None) -> list[RtpPacket]:
    """RTP packets of a pcap (Ethernet or Linux cooked), optionally only those to ``dst_port``.

    A file cut short (the capture was stopped mid-write) yields the complete records before it.
    """
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS) else ">"
    magic = struct.unpack(endian + "I", data[:4])[0]
    divisor = 1e9 if magic == _PCAP_MAGIC_NS else 1e6
    link = struct.unpack(endian + "I", data[20:24])[0]
    out: list[RtpPacket] = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[pos : pos + 16])
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < incl:
            break
        udp = _udp_payload(frame, link)
        if udp is None or (dst_port is not None and udp[0] != dst_port):
            continue
        pkt = RtpPacket.parse(udp[1], sec + frac / divisor)
        if pkt is not None:
            out.append(pkt)
    return out


def decode_pcma(packets: Iterable[RtpPacket], *, max_gap_s: float = 5.0) -> np.ndarray:
    """The PCMA packets as one int16 8 kHz signal, each placed by its RTP timestamp.

    Lost packets become silence. A new SSRC (or a timestamp jump beyond ``max_gap_s``) starts a
    new run placed by arrival time, so the result still follows the wall clock. Other payload
    types (telephone-event, comfort noise) are ignored.
    """
    audio = [p for p in packets if p.payload_type == PCMA]
    if not audio:
        return np.zeros(0, dtype=np.int16)
    t0 = audio[0].arrival
    placed: list[tuple[int, bytes]] = []
    end = 0
    run: tuple[int, int, int] | None = None  # (ssrc, base timestamp, base sample)
    for pkt in audio:
        offset = 0 if run is None else (pkt.timestamp - run[1]) & 0xFFFFFFFF
        if run is None or pkt.ssrc != run[0] or offset > max_gap_s * RATE:
            run = (pkt.ssrc, pkt.timestamp, max(end, round((pkt.arrival - t0) * RATE)))
            offset = 0
        placed.append((run[2] + offset, pkt.payload))
        end = max(end, run[2] + offset + len(pkt.payload))
    out = np.zeros(end, dtype=np.int16)
    for pos, payload in placed:
        out[pos : pos + len(payload)] = alaw_decode(payload)
    return out
