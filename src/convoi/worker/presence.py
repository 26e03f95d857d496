"""When the caller was last there: an honest end for a web caller who vanishes.

A browser whose process dies (or whose network goes) leaves no goodbye: livekit-server notices only
when ICE times out, about 20 s later, and then reports the participant disconnected with a
"connection lost" reason (``CONNECTION_TIMEOUT``; ``SIGNAL_CLOSE``/``MEDIA_FAILURE`` likewise).
Ending the call at that moment would bill the caller for time they were not there.

:class:`CallerPresence` samples the inbound RTP statistics of the caller's audio track every
second (``RemoteTrack.get_stats()``: ``inbound-rtp`` ``packets_received`` and
``last_packet_received_timestamp``, wall-clock milliseconds; the decoded audio is no witness,
NetEq keeps producing frames after the packets stop) and remembers when the last packet came.
When the caller's participant disconnects, :func:`departure` decides when they left:

- a lost connection, media seen recently, the microphone not muted: when media was last seen;
- anything else (the caller hung up: ``CLIENT_INITIATED``; removed; room deleted; a muted caller
  whose packets stopped because of the mute; no media ever seen): the moment of the disconnect.

A phone callee is watched the same way: livekit-sip forwards their RTP into the room as it comes,
so the room track's packets stop when theirs do, and a callee who vanishes without a BYE (a dead
phone, lost coverage) is dropped by the bridge's media timeout 15 s later; the bridge then leaves
the room ``CLIENT_INITIATED`` as after a hang-up, but without first setting its ``sip.callStatus``
attribute to ``hangup`` (:func:`phone_disconnect_reason`).

The module decides nothing about the call's end itself: :class:`~convoi.worker.call.Call` asks it
for the moment and ends the call ``customer_hangup`` at it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from livekit import rtc

from convoi.worker.log import logger

__all__ = [
    "LOSS_WINDOW",
    "LOST_CONNECTION",
    "PHONE_LOST_CONNECTION",
    "SAMPLE_INTERVAL",
    "SIP_CALL_STATUS",
    "AudioSample",
    "CallerPresence",
    "Departure",
    "MediaClock",
    "departure",
    "phone_disconnect_reason",
    "sample_caller_audio",
]

SAMPLE_INTERVAL = 1.0
"""Seconds between two samples of the caller's inbound RTP statistics (the end's precision)."""
LOSS_WINDOW = 60.0
"""Longest gap between the last media and a lost-connection disconnect that is read as "left when
media stopped" (livekit-server notices a lost connection after ~20 s); a longer gap means the
caller was there without sending audio, and the disconnect's moment is kept."""
LOST_CONNECTION: frozenset[int] = frozenset(
    {
        rtc.DisconnectReason.CONNECTION_TIMEOUT,
        rtc.DisconnectReason.SIGNAL_CLOSE,
        rtc.DisconnectReason.MEDIA_FAILURE,
    }
)
"""Disconnect reasons that say the caller's connection was lost (not that they hung up)."""
PHONE_LOST_CONNECTION: frozenset[int] = LOST_CONNECTION | {rtc.DisconnectReason.UNKNOWN_REASON}
"""The same for a phone callee, whose reason :func:`phone_disconnect_reason` reads first."""
SIP_CALL_STATUS = "sip.callStatus"
"""The SIP participant's attribute livekit-sip keeps current: ``active``, then ``hangup``."""


def phone_disconnect_reason(reason: int | None, attributes: dict[str, str]) -> int | None:
    """What a SIP participant's disconnect means. livekit-sip leaves the room
    ``CLIENT_INITIATED`` whatever ended the call, but sets ``sip.callStatus`` to ``hangup``
    first when the callee hung up (BYE or CANCEL); a call it dropped (no RTP for its media
    timeout, a failed transport) leaves with the status still ``active``: ``UNKNOWN_REASON``."""
    if attributes.get(SIP_CALL_STATUS) == "hangup":
        return reason
    if reason in (None, rtc.DisconnectReason.CLIENT_INITIATED):
        return rtc.DisconnectReason.UNKNOWN_REASON
    return reason


@dataclass(frozen=True)
class AudioSample:
    """One look at the caller's audio: inbound RTP packets so far (None: no track or no stats
    yet), whether their microphone is muted and how long ago the last packet came (None: not
    reported; the sample's time stands for it)."""

    packets: int | None
    muted: bool
    silent_for: float | None = None


@dataclass
class MediaClock:
    """When the caller's audio packets were last seen arriving (pure: fed samples)."""

    packets: int | None = None
    seen_at: float | None = None
    """When the latest packet came: the sample that saw the count grow, less how long before it
    the stats say the last packet arrived."""
    muted: bool = False

    def observe(self, sample: AudioSample, at: float) -> None:
        """Take one sample taken at ``at``."""
        self.muted = sample.muted
        if sample.packets is None:
            return
        if self.packets is None or sample.packets > self.packets:
            seen = at - max(0.0, sample.silent_for or 0.0)
            self.seen_at = seen if self.seen_at is None else max(self.seen_at, seen)
        self.packets = sample.packets


@dataclass(frozen=True)
class Departure:
    """When the caller left, and whether that is the last media (True) or the disconnect."""

    at: float
    by_media: bool


def departure(
    reason: int | None,
    disconnected_at: float,
    media: MediaClock,
    lost: frozenset[int] = LOST_CONNECTION,
) -> Departure:
    """When a caller who disconnected at ``disconnected_at`` for ``reason`` really left
    (``lost``: the reasons that mean a lost connection for this kind of caller)."""
    seen = media.seen_at
    if (
        reason in lost
        and not media.muted
        and seen is not None
        and 0.0 <= disconnected_at - seen <= LOSS_WINDOW
    ):
        return Departure(seen, by_media=True)
    return Departure(disconnected_at, by_media=False)


class _Room(Protocol):
    @property
    def remote_participants(self) -> dict[str, rtc.RemoteParticipant]: ...


async def sample_caller_audio(room: _Room, identity: str) -> AudioSample:
    """The caller's inbound audio now: packets received over their subscribed audio tracks."""
    participant = room.remote_participants.get(identity)
    if participant is None:
        return AudioSample(None, muted=False)
    packets: int | None = None
    muted = False
    silent_for: float | None = None
    now = time.time()  # last_packet_received_timestamp is wall-clock milliseconds
    for publication in list(participant.track_publications.values()):
        if publication.kind != rtc.TrackKind.KIND_AUDIO:
            continue
        muted = muted or publication.muted
        track = publication.track
        if track is None:
            continue
        for stats in await track.get_stats():
            if stats.WhichOneof("stats") != "inbound_rtp":
                continue
            packets = (packets or 0) + stats.inbound_rtp.received.packets_received
            last = stats.inbound_rtp.inbound.last_packet_received_timestamp
            if last > 0:
                ago = max(0.0, now - last / 1000.0)
                silent_for = ago if silent_for is None else min(silent_for, ago)
    return AudioSample(packets, muted=muted, silent_for=silent_for)


Sampler = Callable[[], Awaitable[AudioSample]]


class CallerPresence:
    """Watches one caller's media while the call is active; see the module docstring."""

    def __init__(
        self,
        room: Any,
        identity: str,
        *,
        clock: Callable[[], float],
        sampler: Sampler | None = None,
        interval: float | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        log_fields: dict[str, Any] | None = None,
        lost: frozenset[int] = LOST_CONNECTION,
    ) -> None:
        self._lost = lost
        self._sampler: Sampler = sampler or (lambda: sample_caller_audio(room, identity))
        self._clock = clock
        self._interval = SAMPLE_INTERVAL if interval is None else interval
        self._sleep = sleep
        self._fields = log_fields or {}
        self.media = MediaClock()
        """What the samples saw so far."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling (the call is active)."""
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="convoi-caller-presence")

    def stop(self) -> None:
        """Stop sampling (the call is ending)."""
        if self._task is not None:
            self._task.cancel()

    def left_at(self, reason: int | None) -> float:
        """The caller disconnected now for ``reason``: when they really left."""
        result = departure(reason, self._clock(), self.media, self._lost)
        if result.by_media:
            logger.info(
                "caller's connection was lost: the call ends when their media stopped",
                extra={
                    **self._fields,
                    "disconnect_reason": rtc.DisconnectReason.Name(reason or 0),  # type: ignore[arg-type]
                    "silent_seconds": round(self._clock() - result.at, 3),
                },
            )
        return result.at

    async def _watch(self) -> None:
        failed = False
        while True:
            try:
                sample = await self._sampler()
            except Exception as exc:  # stats are best effort: never the end of a call
                if not failed:
                    failed = True
                    logger.debug(
                        "cannot sample the caller's audio: %s",
                        type(exc).__name__,
                        extra=self._fields,
                    )
            else:
                self.media.observe(sample, self._clock())
            await self._sleep(self._interval)
