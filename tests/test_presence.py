"""A web caller who vanishes: the call ends when their media stopped, not when the server noticed.

The decision (:func:`convoi.worker.presence.departure`) and the arithmetic (:class:`MediaClock`)
are pure; :class:`CallerPresence` is driven with a scripted sampler; the last test runs a
:class:`~convoi.worker.call.Call` whose caller's audio track reports inbound RTP statistics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from livekit.rtc._proto import stats_pb2

from convoi.definitions.models import Definitions
from convoi.worker import presence
from convoi.worker.presence import (
    LOSS_WINDOW,
    PHONE_LOST_CONNECTION,
    AudioSample,
    CallerPresence,
    MediaClock,
    departure,
    phone_disconnect_reason,
    sample_caller_audio,
)
from tests.test_call import TIMEOUT, Clock, FakeParticipant, ended, reported, running_web_call

LOST = rtc.DisconnectReason.CONNECTION_TIMEOUT
HUNG_UP = rtc.DisconnectReason.CLIENT_INITIATED


def clock_seeing(*samples: tuple[float, int | None, bool]) -> MediaClock:
    media = MediaClock()
    for at, packets, muted in samples:
        media.observe(AudioSample(packets, muted), at)
    return media


# -- the arithmetic ----------------------------------------------------------------------------


def test_media_is_seen_when_the_packet_count_last_grew() -> None:
    media = clock_seeing(
        (10.0, 50, False), (11.0, 100, False), (12.0, 100, False), (13.0, 100, False)
    )
    assert (media.seen_at, media.packets) == (11.0, 100)


def test_the_stats_say_how_long_before_the_sample_the_last_packet_came() -> None:
    media = MediaClock()
    media.observe(AudioSample(50, False, silent_for=0.3), 10.0)
    assert media.seen_at == pytest.approx(9.7)
    media.observe(AudioSample(60, False, silent_for=0.8), 11.0)
    assert media.seen_at == pytest.approx(10.2)
    media.observe(AudioSample(60, False, silent_for=1.8), 12.0)  # nothing new: unchanged
    assert media.seen_at == pytest.approx(10.2)
    media.observe(AudioSample(61, False, silent_for=5.0), 13.0)  # never earlier than seen
    assert media.seen_at == pytest.approx(10.2)


def test_no_track_yet_is_no_media() -> None:
    media = clock_seeing((10.0, None, False), (11.0, None, False))
    assert media.seen_at is None
    media.observe(AudioSample(0, False), 12.0)
    assert media.seen_at == 12.0  # a track with stats: present from then on


# -- the decision ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        rtc.DisconnectReason.CONNECTION_TIMEOUT,
        rtc.DisconnectReason.SIGNAL_CLOSE,
        rtc.DisconnectReason.MEDIA_FAILURE,
    ],
)
def test_a_lost_connection_ends_when_media_stopped(reason: int) -> None:
    media = clock_seeing((100.0, 10, False), (101.0, 60, False), (102.0, 60, False))
    assert departure(reason, 121.0, media).at == 101.0
    assert departure(reason, 121.0, media).by_media


@pytest.mark.parametrize(
    "reason",
    [
        rtc.DisconnectReason.CLIENT_INITIATED,
        rtc.DisconnectReason.PARTICIPANT_REMOVED,
        rtc.DisconnectReason.ROOM_DELETED,
        rtc.DisconnectReason.DUPLICATE_IDENTITY,
        None,
    ],
)
def test_any_other_disconnect_ends_at_the_disconnect(reason: int | None) -> None:
    media = clock_seeing((100.0, 10, False), (101.0, 60, False))
    assert departure(reason, 121.0, media).at == 121.0


def test_a_muted_caller_is_not_cut_short() -> None:
    """Muted, no packets: the silence is the mute, not the caller leaving."""
    media = clock_seeing((100.0, 60, False), (101.0, 60, True), (130.0, 60, True))
    assert departure(LOST, 150.0, media).at == 150.0


def test_media_stopped_long_before_the_loss_keeps_the_disconnect() -> None:
    media = clock_seeing((100.0, 60, False))
    assert departure(LOST, 100.0 + LOSS_WINDOW + 1, media).at == 100.0 + LOSS_WINDOW + 1
    assert departure(LOST, 100.0 + LOSS_WINDOW - 1, media).at == 100.0


def test_no_media_ever_keeps_the_disconnect() -> None:
    assert departure(LOST, 150.0, MediaClock()).at == 150.0


# -- the watch ---------------------------------------------------------------------------------


class Steps:
    """A sleep the test releases one period at a time, and a sampler it scripts."""

    def __init__(self, samples: list[AudioSample | Exception], clock: Clock) -> None:
        self.samples: Iterator[AudioSample | Exception] = iter(samples)
        self.clock = clock
        self.slept = asyncio.Queue[asyncio.Future[None]]()

    async def sample(self) -> AudioSample:
        item = next(self.samples)
        if isinstance(item, Exception):
            raise item
        return item

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        await self.slept.put(wake)
        await wake
        self.clock.now += seconds

    async def period(self) -> None:
        """Wait for the watch to finish one sample, then let one period pass."""
        wake = await asyncio.wait_for(self.slept.get(), TIMEOUT)
        wake.set_result(None)


async def test_the_watch_samples_every_period_and_survives_failing_stats() -> None:
    clock = Clock()
    start = clock.now
    steps = Steps(
        [
            AudioSample(None, False),
            AudioSample(40, False),
            RuntimeError("stats unavailable"),
            AudioSample(90, False),
            AudioSample(90, False),
            AudioSample(90, False),
        ],
        clock,
    )
    presence = CallerPresence(
        None, "browser-1", clock=clock, sampler=steps.sample, sleep=steps.sleep
    )
    presence.start()
    for _ in range(5):
        await steps.period()
    await asyncio.wait_for(steps.slept.get(), TIMEOUT)  # the sixth sample is taken
    presence.stop()
    assert presence.media.seen_at == start + 3.0  # 90 packets first seen at the fourth sample
    clock.now = start + 25.0
    assert presence.left_at(LOST) == start + 3.0
    assert presence.left_at(HUNG_UP) == start + 25.0


# -- the real sampler and the call -------------------------------------------------------------


def inbound(packets: int, last_packet_at: float = 0.0) -> stats_pb2.RtcStats:
    stats = stats_pb2.RtcStats()
    stats.inbound_rtp.received.packets_received = packets
    stats.inbound_rtp.inbound.last_packet_received_timestamp = last_packet_at * 1000.0
    return stats


class FakeAudioTrack:
    """A subscribed remote audio track whose stats the test sets; each read is signalled."""

    def __init__(self) -> None:
        self.packets = 0
        self.reads = asyncio.Condition()
        self.count = 0

    async def get_stats(self) -> list[stats_pb2.RtcStats]:
        async with self.reads:
            self.count += 1
            self.reads.notify_all()
        other = stats_pb2.RtcStats()
        other.codec.codec.mime_type = "audio/opus"
        return [other, inbound(self.packets)]

    async def read_twice(self) -> None:
        """Wait until the watch has read the stats twice more (the latest value is in)."""
        async with self.reads:
            target = self.count + 2
            await asyncio.wait_for(self.reads.wait_for(lambda: self.count >= target), TIMEOUT)


class FakePublication:
    def __init__(
        self, track: FakeAudioTrack | None, *, kind: Any = rtc.TrackKind.KIND_AUDIO
    ) -> None:
        self.track = track
        self.kind = kind
        self.muted = False


class FakeRemote:
    def __init__(self, *publications: FakePublication) -> None:
        self.track_publications = {str(i): p for i, p in enumerate(publications)}


class FakeRoomWith:
    def __init__(self, **participants: FakeRemote) -> None:
        self.remote_participants = participants


async def test_the_sampler_sums_inbound_audio_packets_and_reads_the_mute() -> None:
    track = FakeAudioTrack()
    track.packets = 120
    video = FakePublication(FakeAudioTrack(), kind=rtc.TrackKind.KIND_VIDEO)
    unsubscribed = FakePublication(None)
    audio = FakePublication(track)
    room = FakeRoomWith(caller=FakeRemote(video, unsubscribed, audio))
    assert await sample_caller_audio(room, "caller") == AudioSample(120, muted=False)  # type: ignore[arg-type]
    audio.muted = True
    assert await sample_caller_audio(room, "caller") == AudioSample(120, muted=True)  # type: ignore[arg-type]
    assert await sample_caller_audio(room, "someone") == AudioSample(None, muted=False)  # type: ignore[arg-type]


async def test_the_sampler_reads_when_the_last_packet_came() -> None:
    class Stamped(FakeAudioTrack):
        async def get_stats(self) -> list[stats_pb2.RtcStats]:
            return [inbound(70, last_packet_at=time.time() - 4.0)]

    room = FakeRoomWith(caller=FakeRemote(FakePublication(Stamped())))
    sample = await sample_caller_audio(room, "caller")  # type: ignore[arg-type]
    assert sample.packets == 70
    assert sample.silent_for is not None and 3.99 <= sample.silent_for < 4.0 + TIMEOUT


@pytest.fixture
def fast_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "SAMPLE_INTERVAL", 0.02)


@pytest.mark.usefixtures("fast_sampling")
async def test_a_web_caller_whose_connection_is_lost_is_billed_until_their_media_stopped(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    _call, job, _room = await running_web_call(defs, tmp_path, [], clock)
    track = FakeAudioTrack()
    job.room.remote_participants = {"browser-1": FakeRemote(FakePublication(track))}  # type: ignore[attr-defined]
    track.packets = 50
    await track.read_twice()
    clock.now += 6
    track.packets = 350  # six seconds of audio arrive
    await track.read_twice()
    clock.now += 20  # the caller vanished; the server notices 20 s later
    await track.read_twice()
    job.room.emit("participant_disconnected", FakeParticipant("browser-1", LOST))
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason, final.duration_seconds) == (
        "completed",
        "customer_hangup",
        6.0,
    )


@pytest.mark.usefixtures("fast_sampling")
async def test_a_web_caller_who_hangs_up_is_billed_until_the_disconnect(
    defs: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    _call, job, _room = await running_web_call(defs, tmp_path, [], clock)
    track = FakeAudioTrack()
    job.room.remote_participants = {"browser-1": FakeRemote(FakePublication(track))}  # type: ignore[attr-defined]
    track.packets = 50
    await track.read_twice()
    clock.now += 6
    await track.read_twice()  # no new packets (the caller is quiet, DTX), then a clean leave
    job.room.emit("participant_disconnected", FakeParticipant("browser-1", HUNG_UP))
    await job.finished()

    final = ended(reported(tmp_path))
    assert (final.ended_reason, final.duration_seconds) == ("customer_hangup", 6.0)


def test_a_phone_callee_who_hung_up_is_told_from_one_the_bridge_dropped() -> None:
    bye = phone_disconnect_reason(
        rtc.DisconnectReason.CLIENT_INITIATED, {"sip.callStatus": "hangup"}
    )
    dropped = phone_disconnect_reason(
        rtc.DisconnectReason.CLIENT_INITIATED, {"sip.callStatus": "active"}
    )
    assert bye == rtc.DisconnectReason.CLIENT_INITIATED and bye not in PHONE_LOST_CONNECTION
    assert dropped in PHONE_LOST_CONNECTION
    media = MediaClock()
    media.observe(AudioSample(packets=900, muted=False), at=100.0)
    assert departure(dropped, 115.0, media, PHONE_LOST_CONNECTION).at == 100.0  # last packet
    assert departure(bye, 115.0, media, PHONE_LOST_CONNECTION).at == 115.0  # the BYE
