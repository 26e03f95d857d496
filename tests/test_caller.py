"""The simulated web caller against a real livekit-server and a stand-in agent.

The stand-in is a plain ``rtc.Room`` participant joined with ``kind=agent``: it speaks a greeting
when the caller's microphone appears, then answers each time the caller's speech energy ends. It
also publishes what it says on the ``lk.transcription`` text stream topic, as livekit-agents does.

The livekit-server fixture here (ports 7890-7892) is a stand-in for the shared devstack fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc

from convoi.devstack.audio import SPEECH_RMS_THRESHOLD, rms, synthesize
from convoi.devstack.caller import (
    TRANSCRIPTION_TOPIC,
    CallerEvent,
    CallerReport,
    CallerScript,
    caller_token,
    run_caller,
)
from convoi.devstack.livekit_server import LiveKitServer
from tests.helpers import free_port

API_KEY, API_SECRET = "devkey", "secret"

GREETING = "Hello, thanks for calling. How can I help you today?"
REPLIES = ["Sure, I can help with that.", "All done, your table is booked."]
UTTERANCES = ["I would like to book a table.", "Tomorrow at eight, for two people."]


@pytest.fixture
def local_livekit_url(livekit_server: LiveKitServer) -> str:
    """The shared loopback livekit-server's ws:// URL."""
    return livekit_server.url


# --------------------------------------------------------------------------------------------
# the stand-in agent
# --------------------------------------------------------------------------------------------


class StandInAgent:
    """Greets when the caller's microphone appears; replies after each burst of caller speech."""

    RATE = 48000
    FRAME = 480  # 10 ms
    CALLER_SILENCE_S = 0.6

    def __init__(
        self,
        room_name: str,
        *,
        greeting: str | None,
        replies: list[str],
        leave_after_replies: bool = False,
    ) -> None:
        self.room_name = room_name
        self.leave_after_replies = leave_after_replies
        self.identity = "agent-standin"
        self.greeting = greeting
        self.replies = list(replies)
        self.room = rtc.Room()
        self.source = rtc.AudioSource(self.RATE, 1)
        self.track = rtc.LocalAudioTrack.create_audio_track("roomio_audio", self.source)
        self.track_sid: str | None = None
        self.to_say: asyncio.Queue[str] = asyncio.Queue()
        self.said: list[str] = []
        self.heard_utterances = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[str] = []

    async def start(self, url: str) -> None:
        token = caller_token(API_KEY, API_SECRET, self.room_name, self.identity, kind="agent")
        self.room.on("track_subscribed", self._on_track)
        await self.room.connect(url, token)
        pub = await self.room.local_participant.publish_track(
            self.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self.track_sid = pub.sid
        self.tasks.append(asyncio.create_task(self._speaker()))

    def _on_track(
        self, track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        if self.greeting:
            self.to_say.put_nowait(self.greeting)
        self.tasks.append(asyncio.create_task(self._listen(track)))

    async def _listen(self, track: rtc.Track) -> None:
        """Counts caller utterances: loud audio followed by CALLER_SILENCE_S of quiet audio."""
        quiet_needed = int(16000 * self.CALLER_SILENCE_S)
        in_speech, quiet = False, 0
        async for ev in rtc.AudioStream(track, sample_rate=16000, num_channels=1):
            samples = np.frombuffer(ev.frame.data, dtype=np.int16)
            if rms(samples) >= SPEECH_RMS_THRESHOLD:
                in_speech, quiet = True, 0
            elif in_speech:
                quiet += samples.size
                if quiet >= quiet_needed:
                    in_speech = False
                    self.heard_utterances += 1
                    if self.replies:
                        self.to_say.put_nowait(self.replies.pop(0))

    async def _speaker(self) -> None:
        while True:
            text = await self.to_say.get()
            try:
                pcm = synthesize(text, self.RATE)
                for i in range(0, pcm.size, self.FRAME):
                    chunk = pcm[i : i + self.FRAME]
                    if chunk.size < self.FRAME:
                        chunk = np.pad(chunk, (0, self.FRAME - chunk.size))
                    await self.source.capture_frame(
                        rtc.AudioFrame(chunk.tobytes(), self.RATE, 1, self.FRAME)
                    )
                await self.source.wait_for_playout()
                self.said.append(text)
                writer = await self.room.local_participant.stream_text(
                    topic=TRANSCRIPTION_TOPIC,
                    attributes={
                        "lk.transcription_final": "false",
                        "lk.segment_id": f"SG_{len(self.said)}",
                    },
                )
                await writer.write(text)
                await writer.aclose(
                    attributes={
                        "lk.transcription_final": "true",
                        "lk.transcribed_track_id": self.track_sid or "",
                    }
                )
            except Exception as e:  # surfaced by the test's assertions
                self.errors.append(f"{type(e).__name__}: {e}")
            if self.leave_after_replies and not self.replies and text != self.greeting:
                await self.room.disconnect()  # the agent ends the call
                return

    async def aclose(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await self.room.disconnect()
        with contextlib.suppress(Exception):
            await self.source.aclose()


def _room() -> str:
    return f"caller-test-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


@pytest.mark.e2e
async def test_caller_hears_greeting_and_two_replies(
    local_livekit_url: str, tmp_path: Path
) -> None:
    room = _room()
    agent = StandInAgent(room, greeting=GREETING, replies=REPLIES)
    await agent.start(local_livekit_url)
    events: list[CallerEvent] = []
    try:
        report = await run_caller(
            local_livekit_url,
            caller_token(API_KEY, API_SECRET, room, "caller", name="Test Caller"),
            CallerScript(utterances=list(UTTERANCES), max_wait_s=60.0),
            on_event=events.append,
        )
    finally:
        await agent.aclose()

    assert report.errors == [], report.errors
    assert agent.errors == []
    assert report.room == room and report.identity == "caller"
    assert report.agent_identity == agent.identity
    assert report.joined is not None and report.agent_joined is not None

    # the greeting was heard, and was speech
    assert report.first_agent_audio is not None and report.greeting_end is not None
    assert report.greeting_latency_ms is not None and report.greeting_latency_ms > 0
    assert report.greeting_end.mono >= report.first_agent_audio.mono
    greeting_seg = report.segments[0]
    assert greeting_seg.rms >= SPEECH_RMS_THRESHOLD
    assert greeting_seg.duration_s > 0.5

    # two turns, each with a reply heard after the caller finished speaking
    assert [t.text for t in report.turns] == UTTERANCES
    assert agent.heard_utterances >= 2
    eos = [t.end_of_speech for t in report.turns]
    assert all(e is not None for e in eos)
    assert report.greeting_end.mono < eos[0].mono < eos[1].mono  # type: ignore[union-attr]
    for turn in report.turns:
        assert turn.speech_start is not None and turn.end_of_speech is not None
        assert turn.end_of_speech.mono > turn.speech_start.mono
        assert turn.first_reply_audio is not None and turn.reply_end is not None
        assert turn.reply_latency_ms is not None and turn.reply_latency_ms > 0
        assert turn.reply_end.mono >= turn.first_reply_audio.mono
    assert report.turns[0].reply_end.mono < report.turns[1].end_of_speech.mono  # type: ignore[union-attr]
    assert all(x is not None and x > 0 for x in report.reply_latencies_ms)
    assert len(report.segments) >= 3
    assert all(s.rms >= SPEECH_RMS_THRESHOLD and s.duration_s > 0 for s in report.segments)

    # what the agent said, from the lk.transcription text streams
    assert agent.said[:3] == [GREETING, *REPLIES]
    assert report.transcript_texts(agent.identity)[:3] == [GREETING, *REPLIES]
    assert all(t.track_id == agent.track_sid for t in report.final_transcripts)

    # the recording: one rate, non-silent, consistent with the segments
    assert report.agent_audio.dtype == np.int16 and report.agent_audio_rate == 16000
    assert report.agent_audio.size >= report.segments[-1].end_sample
    assert rms(report.agent_audio[greeting_seg.start_sample : greeting_seg.end_sample]) > 0
    wav = report.save_wav(tmp_path / "agent.wav")
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 16000 and w.getnframes() == report.agent_audio.size

    # JSON report and progress events
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and len(data["latencies_ms"]["replies"]) == 2
    kinds = [e.kind for e in events]
    for kind in ("joined", "agent_joined", "greeting_start", "greeting_end", "left"):
        assert kind in kinds
    assert kinds.count("reply_start") == 2 and kinds.count("end_of_speech") == 2
    assert report.left is not None


@pytest.mark.e2e
async def test_caller_reports_timeout_when_agent_stays_silent(local_livekit_url: str) -> None:
    room = _room()
    agent = StandInAgent(room, greeting=None, replies=[])
    await agent.start(local_livekit_url)
    try:
        report = await run_caller(
            local_livekit_url,
            caller_token(API_KEY, API_SECRET, room, "caller"),
            CallerScript(utterances=["Hello?"], max_wait_s=3.0),
        )
    finally:
        await agent.aclose()

    assert report.agent_joined is not None
    assert report.first_agent_audio is None
    assert len(report.errors) == 1
    assert "greeting start" in report.errors[0] and "3.0 s" in report.errors[0]
    assert report.turns == []  # the script stopped at the failed step
    assert report.left is not None
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False


@pytest.mark.e2e
async def test_caller_stays_until_agent_hangs_up(local_livekit_url: str) -> None:
    room = _room()
    agent = StandInAgent(room, greeting="Hi.", replies=["Goodbye."], leave_after_replies=True)
    await agent.start(local_livekit_url)
    try:
        report = await run_caller(
            local_livekit_url,
            caller_token(API_KEY, API_SECRET, room, "caller"),
            CallerScript(utterances=["Bye."], hang_up_after=False, max_wait_s=60.0),
        )
    finally:
        await agent.aclose()

    assert report.errors == [], report.errors
    assert report.turns[0].reply_end is not None
    assert report.agent_left is not None
    assert report.agent_left.mono >= report.turns[0].reply_end.mono
    assert report.left is not None


@pytest.mark.e2e
async def test_caller_reports_unreachable_server() -> None:
    """Nothing listens on this port: the connect step fails, run_caller returns."""
    report = await run_caller(
        f"ws://127.0.0.1:{free_port()}",
        caller_token(API_KEY, API_SECRET, "nowhere", "caller"),
        CallerScript(utterances=["Hello?"], connect_timeout_s=10.0, max_wait_s=3.0),
    )
    assert report.joined is None
    assert len(report.errors) == 1 and "connect" in report.errors[0]


def test_report_serialises_and_saves_without_a_call(tmp_path: Path) -> None:
    report = CallerReport(url="ws://127.0.0.1:1")
    report.agent_audio = synthesize("hi", 16000)
    data = report.to_dict(include_audio=True)
    assert json.loads(json.dumps(data))["agent_audio_seconds"] > 0
    path = report.save_wav(tmp_path / "a.wav")
    with wave.open(str(path)) as w:
        assert w.getnframes() == report.agent_audio.size
