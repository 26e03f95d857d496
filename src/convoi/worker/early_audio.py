"""The agent's audio track, published the moment the room is connected.

livekit's RoomIO publishes the agent's track only once the session has started and found its
participant, and every frame waits until the caller has subscribed to it; on a phone call, that
is after the answer: one more track negotiation through the SIP bridge before the greeting can
play (about 300 ms here). Publishing the track as soon as the agent is in the room (while the
phone rings, while the browser joins) lets the caller's side subscribe ahead, so the greeting's
first frame leaves at once. The output is RoomIO's own (the same resampling, pause and playout
accounting as livekit's default); the session is started with it and RoomIO's audio output off.
"""

from __future__ import annotations

import asyncio
import contextlib

from livekit import rtc
from livekit.agents.voice.room_io._output import _ParticipantAudioOutput
from livekit.agents.voice.room_io.types import AudioOutputOptions

from convoi.worker.turn_timing import mark

__all__ = ["TRACK_NAME", "EarlyAudioTrack"]

TRACK_NAME = "roomio_audio"
"""The track's name: RoomIO's default, so clients see the same track as without this module."""


class EarlyAudioTrack:
    """The agent's audio output, publishing (and waiting for the caller to subscribe) from now."""

    def __init__(self, room: rtc.Room, options: AudioOutputOptions | None = None) -> None:
        options = options or AudioOutputOptions()
        self.output = _ParticipantAudioOutput(
            room,
            sample_rate=options.sample_rate,
            num_channels=options.num_channels,
            track_publish_options=options.track_publish_options,
            track_name=TRACK_NAME,
        )
        """The session's ``output.audio`` (RoomIO's audio output stays off)."""
        self._publishing = asyncio.create_task(self.output.start(), name="convoi-early-audio")
        self.output.subscribed.add_done_callback(_mark_subscribed)  # the benchmark's phases

    @property
    def subscribed(self) -> bool:
        """Whether the caller's side has subscribed to the track."""
        return self.output.subscribed.done()

    async def aclose(self) -> None:
        """Stop publishing and close the output (after the session closed)."""
        self._publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._publishing
        with contextlib.suppress(Exception):
            await self.output.aclose()


def _mark_subscribed(subscribed: asyncio.Future[None]) -> None:
    if not subscribed.cancelled():
        mark("track_subscribed")
