"""Connecting two phone legs that sit in two rooms: :class:`AudioBridge`.

livekit-agents' warm transfer moves the human's SIP participant into the caller's room with
``RoomService.MoveParticipant``; the open-source livekit-server (v1.13.5 here) answers that with
"not implemented" (``RoomManager.MoveParticipant``), so the worker bridges the legs itself: it
subscribes to each leg's audio in its room and republishes it, as a track of its own, in the
other room (livekit-sip mixes every audio track of a room into its leg). The bridge lasts until
either leg leaves its room (or a room disconnects); :meth:`AudioBridge.aclose` then deletes the
human's side room, which hangs that leg up, and the call deletes the caller's room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from livekit import api, rtc

from convoi.worker.log import logger

__all__ = ["BRIDGE_TRACK", "AudioBridge", "Leg"]

BRIDGE_TRACK = "transfer-bridge"
"""Name of the tracks the bridge publishes (one per room)."""

_RATE = 48_000
_TRACK_WAIT = 10.0
_CLOSE_TIMEOUT = 5.0


class Leg:
    """One side of the bridge: a phone participant (``identity``) in ``room``."""

    def __init__(self, room: rtc.Room, identity: str) -> None:
        self.room = room
        self.identity = identity

    async def audio_track(self) -> rtc.RemoteAudioTrack:
        """The leg's subscribed audio track (waits up to a few seconds for it)."""
        found = asyncio.get_running_loop().create_future()

        def look(*_: object) -> None:
            participant = self.room.remote_participants.get(self.identity)
            for pub in participant.track_publications.values() if participant else ():
                if isinstance(pub.track, rtc.RemoteAudioTrack) and not found.done():
                    found.set_result(pub.track)

        self.room.on("track_subscribed", look)
        try:
            look()
            track: rtc.RemoteAudioTrack = await asyncio.wait_for(found, timeout=_TRACK_WAIT)
            return track
        finally:
            self.room.off("track_subscribed", look)


class AudioBridge:
    """Audio both ways between two legs, until one of them leaves."""

    def __init__(self, caller: Leg, human: Leg) -> None:
        self.caller, self.human = caller, human
        self._done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Relay the caller's audio into the human's room and the human's into the caller's."""
        for leg, other in ((self.caller, self.human), (self.human, self.caller)):
            track = await leg.audio_track()
            source = rtc.AudioSource(_RATE, 1)
            local = rtc.LocalAudioTrack.create_audio_track(BRIDGE_TRACK, source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            await other.room.local_participant.publish_track(local, options)
            self._tasks.append(asyncio.create_task(self._relay(track, source), name="bridge"))
            leg.room.on("participant_disconnected", self._left(leg))
            leg.room.on("disconnected", lambda *_: self._done.set())

    def _left(self, leg: Leg) -> Callable[[rtc.RemoteParticipant], None]:
        def on_left(participant: rtc.RemoteParticipant) -> None:
            if participant.identity == leg.identity:
                self._done.set()

        return on_left

    async def _relay(self, track: rtc.RemoteAudioTrack, source: rtc.AudioSource) -> None:
        stream = rtc.AudioStream(track, sample_rate=_RATE, num_channels=1)
        try:
            async for event in stream:
                await source.capture_frame(event.frame)
        finally:
            await stream.aclose()
        self._done.set()

    async def wait(self) -> None:
        """Until either leg leaves (or its room goes)."""
        await self._done.wait()

    async def aclose(self, lk: api.LiveKitAPI) -> None:
        """Stop relaying and hang the human's leg up (its side room is deleted) first: the job
        may be shutting down around us (the caller's room going away ends it)."""
        for task in self._tasks:
            task.cancel()
        try:
            request = api.DeleteRoomRequest(room=self.human.room.name)
            await asyncio.wait_for(lk.room.delete_room(request), timeout=_CLOSE_TIMEOUT)
        except Exception as exc:
            logger.warning("could not delete the transfer's side room: %s", type(exc).__name__)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.human.room.disconnect(), timeout=_CLOSE_TIMEOUT)
