"""Keys pressed on the phone's keypad as RTP telephone-events (RFC 4733, formerly RFC 2833).

A phone that presses a key sends, instead of its audio packets while the key is down, packets of
the ``telephone-event`` payload type negotiated in the SDP (101 in our callee's answer and in
livekit-sip's offer): all of one key share the RTP timestamp of the key's start, the first has
the marker bit, each carries the event code, the end bit and the duration so far, and the last
one (end bit set) is sent three times. :func:`with_key_presses` turns an audio stream
(:func:`~convoi.devstack.sipp.rtp.speech_packets`) into such a stream, slot for slot, so
sequence numbers and timing stay those of the audio; SIPp replays it as it is.

:func:`received_keys` reads the other direction: the telephone-events in captured RTP, one
:class:`TelephoneEvent` per key (grouped by SSRC and timestamp, as livekit-sip does), in the
order they started.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from convoi.devstack.sipp.rtp import SAMPLES_PER_PACKET, RtpPacket

__all__ = [
    "KEYS",
    "KEY_GAP_S",
    "KEY_TONE_S",
    "TELEPHONE_EVENT",
    "TelephoneEvent",
    "event_payload",
    "key_schedule",
    "received_keys",
    "with_key_presses",
]

TELEPHONE_EVENT = 101
"""The telephone-event payload type both sides put in their SDP."""
KEYS = "0123456789*#ABCD"
"""Keypad keys by RFC 4733 event code (``*`` is 10, ``#`` is 11, A-D are 12-15)."""
KEY_TONE_S = 0.2
"""How long each key is held down."""
KEY_GAP_S = 0.3
"""Pause between two keys pressed one after another."""
_END_REPEATS = 3
_VOLUME = 10  # -10 dBm0, a typical telephone's level
_SLOT_S = SAMPLES_PER_PACKET / 8000


@dataclass(frozen=True)
class TelephoneEvent:
    """One key as received: when its first packet arrived and what its packets said."""

    key: str
    arrival: float
    timestamp: int
    ssrc: int
    duration: int
    """The longest duration its packets carried, in 8 kHz timestamp units."""
    ended: bool
    """True when an end packet was received."""


def event_payload(key: str, *, duration: int, end: bool, volume: int = _VOLUME) -> bytes:
    """The 4-byte RFC 4733 payload for ``key`` (event code, E bit, volume, duration)."""
    code = KEYS.index(key.upper())
    return struct.pack("!BBH", code, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


def key_schedule(
    presses: Iterable[tuple[float, str]], *, gap_s: float = KEY_GAP_S
) -> list[tuple[float, str]]:
    """Each key with its start (seconds into the stream): every ``(at_s, keys)`` entry presses
    its keys one after another from ``at_s``, a tone of :data:`KEY_TONE_S` then ``gap_s``."""
    out: list[tuple[float, str]] = []
    for at_s, keys in presses:
        for i, key in enumerate(keys):
            if key.upper() not in KEYS:
                raise ValueError(f"{key!r} is not a keypad key ({KEYS})")
            out.append((at_s + i * (KEY_TONE_S + gap_s), key))
    return sorted(out)


def with_key_presses(
    audio: Sequence[RtpPacket],
    presses: Iterable[tuple[float, str]],
    *,
    payload_type: int = TELEPHONE_EVENT,
) -> list[RtpPacket]:
    """``audio`` (packets timed from 0, 20 ms apart) with each ``(at_s, key)`` of ``presses``
    (see :func:`key_schedule`) sent as telephone-event packets in place of the audio packets
    from ``at_s`` for :data:`KEY_TONE_S` (the last :data:`_END_REPEATS` carry the end bit)."""
    out = list(audio)
    tone_slots = max(_END_REPEATS + 1, round(KEY_TONE_S / _SLOT_S))
    for at_s, key in presses:
        first = round(at_s / _SLOT_S)
        if first + tone_slots > len(out):
            raise ValueError(f"key {key!r} at {at_s:g}s is past the end of the stream")
        start_ts = out[first].timestamp
        for k in range(tone_slots):
            slot = out[first + k]
            if slot.payload_type == payload_type:
                raise ValueError(f"key {key!r} at {at_s:g}s overlaps the previous key")
            end = k >= tone_slots - _END_REPEATS
            duration = SAMPLES_PER_PACKET * (tone_slots - _END_REPEATS + 1 if end else k + 1)
            out[first + k] = replace(
                slot,
                payload_type=payload_type,
                timestamp=start_ts,
                marker=k == 0,
                payload=event_payload(key, duration=duration, end=end),
            )
    return out


def received_keys(
    packets: Iterable[RtpPacket], *, payload_type: int = TELEPHONE_EVENT
) -> list[TelephoneEvent]:
    """The keys in ``packets`` (telephone-events of ``payload_type``), in the order they began:
    one per (SSRC, timestamp), however many packets (updates, repeated ends) carried it."""
    found: dict[tuple[int, int], TelephoneEvent] = {}
    for pkt in packets:
        if pkt.payload_type != payload_type or len(pkt.payload) < 4:
            continue
        code, flags, duration = struct.unpack("!BBH", pkt.payload[:4])
        if code >= len(KEYS):
            continue  # not a keypad event (e.g. a fax tone)
        seen = found.get((pkt.ssrc, pkt.timestamp))
        if seen is None:
            found[(pkt.ssrc, pkt.timestamp)] = TelephoneEvent(
                KEYS[code], pkt.arrival, pkt.timestamp, pkt.ssrc, duration, bool(flags & 0x80)
            )
        else:
            found[(pkt.ssrc, pkt.timestamp)] = replace(
                seen, duration=max(seen.duration, duration), ended=seen.ended or bool(flags & 0x80)
            )
    return sorted(found.values(), key=lambda e: e.arrival)
