"""The simulated web caller: a LiveKit participant that talks to the agent like a person would.

It joins a room with a token, publishes a microphone track that carries continuous audio (silence
between utterances, espeak-ng speech when it talks, paced in real time), subscribes to the agent's
audio, records everything the agent says and measures what a caller experiences:

* ``joined``: the room connection completed;
* ``agent_joined``: the agent participant (``ParticipantKind.PARTICIPANT_KIND_AGENT``, or the
  identity given in the script) is in the room;
* ``first_agent_audio``: the first agent frame whose RMS crosses the speech threshold (greeting);
* per turn: ``end_of_speech`` (the caller's last speech sample left the microphone),
  ``first_reply_audio`` (first loud agent frame after it) and ``reply_end`` (the agent went quiet
  for ``end_silence_ms``).

Every timestamp carries both ``time.monotonic()`` (for latencies) and ``time.time()`` (to correlate
with logs of other processes). Transcriptions the agent publishes on the ``lk.transcription`` text
stream topic are collected too. Every step has a deadline: a step that times out adds an error to the
report (which step, how long it waited) and ends the script; :func:`run_caller` never hangs.

Command line::

    python -m convoi.devstack.caller --url ws://127.0.0.1:7880 --token T \\
        --say "I'd like to book a table" --say "Tomorrow at eight" --json out.json --wav agent.wav
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import json
import logging
import sys
import time
import warnings
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from livekit import api, rtc

from convoi.devstack.audio import SPEECH_RMS_THRESHOLD, resample, rms, synthesize

__all__ = [
    "TRANSCRIPTION_TOPIC",
    "AgentSegment",
    "CallerEvent",
    "CallerReport",
    "CallerScript",
    "Stamp",
    "TranscriptEvent",
    "TurnReport",
    "caller_token",
    "main",
    "run_caller",
]

logger = logging.getLogger(__name__)

TRANSCRIPTION_TOPIC = "lk.transcription"
"""Text stream topic on which livekit-agents publishes user and agent transcriptions."""

_ATTR_FINAL = "lk.transcription_final"
_ATTR_TRACK_ID = "lk.transcribed_track_id"
_ATTR_SEGMENT_ID = "lk.segment_id"

_POLL_S = 0.1
"""Upper bound of one wait inside a step, so stalled agent audio is noticed (not a sync sleep)."""


# --------------------------------------------------------------------------------------------
# report data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """A moment, as ``time.monotonic()`` (for durations) and ``time.time()`` (for correlation)."""

    mono: float
    wall: float

    @classmethod
    def now(cls) -> Stamp:
        """The current moment."""
        return cls(time.monotonic(), time.time())

    def shifted(self, seconds: float) -> Stamp:
        """This moment moved by ``seconds``."""
        return Stamp(self.mono + seconds, self.wall + seconds)

    def to_dict(self) -> dict[str, float]:
        """``{"mono": ..., "wall": ...}``."""
        return {"mono": self.mono, "wall": self.wall}


def _ms_between(start: Stamp | None, end: Stamp | None) -> float | None:
    if start is None or end is None:
        return None
    return (end.mono - start.mono) * 1000.0


def _stamp_dict(stamp: Stamp | None) -> dict[str, float] | None:
    return None if stamp is None else stamp.to_dict()


@dataclass
class AgentSegment:
    """One stretch of agent speech: loud frames with gaps shorter than ``end_silence_ms``.

    ``start``/``end`` are the receipt times of the first and last loud frame; ``start_sample`` and
    ``end_sample`` index :attr:`CallerReport.agent_audio`.
    """

    start: Stamp
    end: Stamp
    start_sample: int
    end_sample: int
    duration_s: float
    rms: float
    peak_rms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "start": self.start.to_dict(),
            "end": self.end.to_dict(),
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "duration_s": self.duration_s,
            "rms": self.rms,
            "peak_rms": self.peak_rms,
        }


@dataclass
class TurnReport:
    """One caller utterance and the agent's reply to it."""

    index: int
    text: str
    speech_start: Stamp | None = None
    end_of_speech: Stamp | None = None
    first_reply_audio: Stamp | None = None
    reply_end: Stamp | None = None
    speech_duration_s: float = 0.0
    agent_was_speaking: bool = False
    """The agent was already talking when the caller finished (overlap / barge-in)."""

    @property
    def reply_latency_ms(self) -> float | None:
        """End of the caller's speech → first loud agent frame, in ms."""
        return _ms_between(self.end_of_speech, self.first_reply_audio)

    @property
    def reply_duration_ms(self) -> float | None:
        """First → last loud frame of the reply, in ms."""
        return _ms_between(self.first_reply_audio, self.reply_end)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "index": self.index,
            "text": self.text,
            "speech_start": _stamp_dict(self.speech_start),
            "end_of_speech": _stamp_dict(self.end_of_speech),
            "first_reply_audio": _stamp_dict(self.first_reply_audio),
            "reply_end": _stamp_dict(self.reply_end),
            "speech_duration_s": self.speech_duration_s,
            "agent_was_speaking": self.agent_was_speaking,
            "reply_latency_ms": self.reply_latency_ms,
            "reply_duration_ms": self.reply_duration_ms,
        }


@dataclass
class TranscriptEvent:
    """One text stream received on the ``lk.transcription`` topic.

    livekit-agents sends the agent's speech as one stream per segment (``final`` set on the closing
    trailer) and the user's STT results as interim streams followed by a final one.
    """

    participant_identity: str
    text: str
    final: bool
    track_id: str | None
    segment_id: str | None
    stream_id: str
    attributes: dict[str, str]
    received: Stamp

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "participant_identity": self.participant_identity,
            "text": self.text,
            "final": self.final,
            "track_id": self.track_id,
            "segment_id": self.segment_id,
            "stream_id": self.stream_id,
            "attributes": dict(self.attributes),
            "received": self.received.to_dict(),
        }


@dataclass
class CallerEvent:
    """A progress event, passed to ``on_event`` and kept in :attr:`CallerReport.events`."""

    kind: str
    """One of: joined, agent_joined, agent_track, greeting_start, greeting_end, speech_start,
    end_of_speech, reply_start, reply_end, transcript, agent_left, left, error, warning."""
    at: Stamp
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "at": self.at.to_dict(), "message": self.message, **self.data}


@dataclass
class CallerScript:
    """What the caller says, and how patiently.

    A step is one of: connect, wait for the agent, wait for the greeting to start/end, speak,
    wait for the reply to start/end, wait for the agent to hang up. The first step to time out ends
    the script (with an error in the report) and the caller leaves.
    """

    utterances: list[str] = field(default_factory=list)
    wait_for_greeting: bool = True
    """Wait until the agent has spoken (and finished) before the first utterance."""
    end_silence_ms: int = 700
    """Agent audio below the threshold for this long, after speech, means it finished speaking."""
    max_wait_s: float = 60.0
    """Deadline of each waiting step (agent join, greeting, reply start, reply end, hang-up)."""
    hang_up_after: bool = True
    """Leave after the last reply ends. When False, stay until the agent leaves (or the room closes),
    at most ``max_wait_s``: a test of an agent that ends the call."""
    connect_timeout_s: float = 30.0
    agent_identity: str | None = None
    """Treat this participant as the agent; by default, any participant of kind AGENT."""
    speech_rms_threshold: float = SPEECH_RMS_THRESHOLD
    voice: str = "en-us"
    speed_wpm: int = 175
    mic_sample_rate: int = 48000
    mic_frame_ms: int = 10
    record_sample_rate: int = 16000
    ignore_track_names: tuple[str, ...] = ("background_audio",)
    """Agent tracks not to listen to (livekit-agents' background audio player track)."""


@dataclass
class CallerReport:
    """What the caller experienced. ``to_dict()`` is JSON-serialisable; the PCM is in
    :attr:`agent_audio` (int16 mono at :attr:`agent_audio_rate`), saved by :meth:`save_wav`."""

    url: str
    room: str | None = None
    identity: str | None = None
    agent_identity: str | None = None
    started: Stamp = field(default_factory=Stamp.now)
    joined: Stamp | None = None
    agent_joined: Stamp | None = None
    agent_track_subscribed: Stamp | None = None
    agent_audio_start: Stamp | None = None
    """Receipt of the first agent frame (sample 0 of :attr:`agent_audio`)."""
    first_agent_audio: Stamp | None = None
    greeting_end: Stamp | None = None
    turns: list[TurnReport] = field(default_factory=list)
    agent_left: Stamp | None = None
    left: Stamp | None = None
    segments: list[AgentSegment] = field(default_factory=list)
    transcripts: list[TranscriptEvent] = field(default_factory=list)
    events: list[CallerEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    agent_audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    agent_audio_rate: int = 16000

    @property
    def ok(self) -> bool:
        """No step failed."""
        return not self.errors

    @property
    def greeting_latency_ms(self) -> float | None:
        """Joined → first loud agent frame, in ms."""
        return _ms_between(self.joined, self.first_agent_audio)

    @property
    def agent_join_latency_ms(self) -> float | None:
        """Joined → agent participant seen, in ms (0 when the agent was already there)."""
        if self.joined is None or self.agent_joined is None:
            return None
        return max(0.0, (self.agent_joined.mono - self.joined.mono) * 1000.0)

    @property
    def reply_latencies_ms(self) -> list[float | None]:
        """Per turn: end of the caller's speech → first loud agent frame, in ms."""
        return [t.reply_latency_ms for t in self.turns]

    @property
    def final_transcripts(self) -> list[TranscriptEvent]:
        """The transcripts marked final."""
        return [t for t in self.transcripts if t.final]

    def transcript_texts(self, identity: str | None = None) -> list[str]:
        """Final transcript texts, of one participant when ``identity`` is given (e.g. the agent's
        identity for what it said, the caller's for what the agent's STT heard)."""
        return [
            t.text
            for t in self.final_transcripts
            if identity is None or t.participant_identity == identity
        ]

    @property
    def agent_audio_seconds(self) -> float:
        """Length of the recorded agent audio."""
        return self.agent_audio.size / self.agent_audio_rate if self.agent_audio_rate else 0.0

    def save_wav(self, path: str | Path) -> Path:
        """Write the recorded agent audio as a 16-bit mono WAV file; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.agent_audio_rate)
            w.writeframes(self.agent_audio.astype(np.int16).tobytes())
        return path

    def to_dict(self, *, include_audio: bool = False) -> dict[str, Any]:
        """JSON-ready form. With ``include_audio`` the PCM is added as base64 (``agent_audio_b64``)."""
        out: dict[str, Any] = {
            "url": self.url,
            "room": self.room,
            "identity": self.identity,
            "agent_identity": self.agent_identity,
            "ok": self.ok,
            "started": self.started.to_dict(),
            "joined": _stamp_dict(self.joined),
            "agent_joined": _stamp_dict(self.agent_joined),
            "agent_track_subscribed": _stamp_dict(self.agent_track_subscribed),
            "agent_audio_start": _stamp_dict(self.agent_audio_start),
            "first_agent_audio": _stamp_dict(self.first_agent_audio),
            "greeting_end": _stamp_dict(self.greeting_end),
            "agent_left": _stamp_dict(self.agent_left),
            "left": _stamp_dict(self.left),
            "latencies_ms": {
                "agent_join": self.agent_join_latency_ms,
                "greeting": self.greeting_latency_ms,
                "replies": self.reply_latencies_ms,
            },
            "turns": [t.to_dict() for t in self.turns],
            "segments": [s.to_dict() for s in self.segments],
            "transcripts": [t.to_dict() for t in self.transcripts],
            "events": [e.to_dict() for e in self.events],
            "errors": list(self.errors),
            "agent_audio_rate": self.agent_audio_rate,
            "agent_audio_seconds": self.agent_audio_seconds,
        }
        if include_audio:
            out["agent_audio_b64"] = base64.b64encode(
                self.agent_audio.astype(np.int16).tobytes()
            ).decode("ascii")
        return out


# --------------------------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------------------------


def caller_token(
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    name: str | None = None,
    *,
    kind: str | None = None,
    ttl_s: float = 3600.0,
    attributes: dict[str, str] | None = None,
) -> str:
    """A JWT that lets ``identity`` join ``room`` and publish/subscribe audio and data.

    ``kind`` sets the participant kind ("standard", "agent", "sip", ...): a test's stand-in agent
    uses ``kind="agent"`` so the caller recognises it.
    """
    import datetime

    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_ttl(datetime.timedelta(seconds=ttl_s))
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=room,
                can_publish=True,
                can_subscribe=True,
                can_publish_data=True,
            )
        )
    )
    if name:
        token = token.with_name(name)
    if kind:
        token = token.with_kind(kind)  # type: ignore[arg-type]
    if attributes:
        token = token.with_attributes(attributes)
    with warnings.catch_warnings():
        # devstack secrets ("secret") are shorter than PyJWT's recommended HMAC key length
        warnings.filterwarnings("ignore", message=".*HMAC key.*")
        return token.to_jwt()


# --------------------------------------------------------------------------------------------
# agent audio: recording and speech segmentation
# --------------------------------------------------------------------------------------------


class _Changed:
    """A level-triggered "something changed" signal that many waiters can await."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


class _AgentAudio:
    """Records agent frames, splits them into speech segments and answers "loud since t?"."""

    def __init__(self, rate: int, threshold: float, end_silence_ms: int, changed: _Changed) -> None:
        self.rate = rate
        self.threshold = threshold
        self.end_silence_s = end_silence_ms / 1000.0
        self.end_silence_samples = int(rate * end_silence_ms / 1000)
        self.changed = changed
        self.pcm = bytearray()
        self.first_frame: Stamp | None = None
        self.last_frame_mono: float | None = None
        self.segments: list[AgentSegment] = []
        self.speaking = False
        self._seg_start: Stamp | None = None
        self._seg_start_sample = 0
        self._seg_peak = 0.0
        self._last_loud: Stamp | None = None
        self._last_loud_end_sample = 0
        self._quiet_samples = 0
        self._loud_monos: list[float] = []
        self._loud_walls: list[float] = []

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    def first_loud_after(self, mono: float) -> Stamp | None:
        """Receipt time of the first loud frame received at or after ``mono``, if any yet."""
        i = bisect.bisect_left(self._loud_monos, mono)
        if i == len(self._loud_monos):
            return None
        return Stamp(self._loud_monos[i], self._loud_walls[i])

    def on_frame(self, samples: np.ndarray, at: Stamp) -> None:
        if self.first_frame is None:
            self.first_frame = at
        self.last_frame_mono = at.mono
        start = self.samples
        self.pcm += samples.astype(np.int16).tobytes()
        level = rms(samples)
        if level >= self.threshold:
            if not self.speaking:
                self.speaking = True
                self._seg_start = at
                self._seg_start_sample = start
                self._seg_peak = 0.0
            self._seg_peak = max(self._seg_peak, level)
            self._last_loud = at
            self._last_loud_end_sample = self.samples
            self._quiet_samples = 0
            self._loud_monos.append(at.mono)
            self._loud_walls.append(at.wall)
            self.changed.notify()
        elif self.speaking:
            self._quiet_samples += samples.size
            if self._quiet_samples >= self.end_silence_samples:
                self.close_segment()

    def check_stalled(self) -> None:
        """Close an open segment when frames stopped arriving (track gone, stream stalled)."""
        if not self.speaking or self._last_loud is None:
            return
        now = time.monotonic()
        last = self.last_frame_mono or self._last_loud.mono
        if now - last >= self.end_silence_s and now - self._last_loud.mono >= self.end_silence_s:
            self.close_segment()

    def close_segment(self) -> None:
        if not self.speaking or self._seg_start is None or self._last_loud is None:
            return
        start, end = self._seg_start_sample, self._last_loud_end_sample
        seg_pcm = np.frombuffer(bytes(self.pcm[start * 2 : end * 2]), dtype=np.int16)
        self.segments.append(
            AgentSegment(
                start=self._seg_start,
                end=self._last_loud,
                start_sample=start,
                end_sample=end,
                duration_s=(end - start) / self.rate,
                rms=rms(seg_pcm),
                peak_rms=self._seg_peak,
            )
        )
        self.speaking = False
        self._quiet_samples = 0
        self.changed.notify()

    def array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.pcm), dtype=np.int16).copy()


# --------------------------------------------------------------------------------------------
# microphone: continuous silence, speech on demand
# --------------------------------------------------------------------------------------------


@dataclass
class _Utterance:
    pcm: np.ndarray
    done: asyncio.Future[tuple[Stamp, Stamp]]


def _trim_silence(pcm: np.ndarray, rate: int, threshold: float) -> np.ndarray:
    """Cut leading/trailing 10 ms windows below ``threshold`` (espeak pads its output)."""
    win = max(1, rate // 100)
    n = pcm.size // win
    if n == 0:
        return pcm
    levels = [rms(pcm[i * win : (i + 1) * win]) for i in range(n)]
    loud = [i for i, level in enumerate(levels) if level >= threshold]
    if not loud:
        return pcm
    return pcm[loud[0] * win : min(pcm.size, (loud[-1] + 1) * win)]


class _Microphone:
    """Feeds an ``rtc.AudioSource`` without pause: silence, or the utterance being spoken.

    The source queue is short (50 ms) so ``capture_frame`` paces the loop in real time and speech
    leaves at most ~50 ms after it is queued; ``end_of_speech`` accounts for what is still queued.
    """

    def __init__(self, rate: int, frame_ms: int) -> None:
        self.rate = rate
        self.frame = max(1, rate * frame_ms // 1000)
        self.source = rtc.AudioSource(rate, 1, queue_size_ms=50)
        self.track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        self._pending: asyncio.Queue[_Utterance] = asyncio.Queue()
        self._silence = np.zeros(self.frame, dtype=np.int16)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="caller-microphone")

    async def say(self, pcm: np.ndarray) -> tuple[Stamp, Stamp]:
        """Queue speech; returns when its last sample has left: (start, end) of the speech."""
        done: asyncio.Future[tuple[Stamp, Stamp]] = asyncio.get_running_loop().create_future()
        await self._pending.put(_Utterance(pcm, done))
        return await done

    async def _capture(self, chunk: np.ndarray) -> None:
        if chunk.size < self.frame:
            chunk = np.pad(chunk, (0, self.frame - chunk.size))
        await self.source.capture_frame(rtc.AudioFrame(chunk.tobytes(), self.rate, 1, self.frame))

    async def _pump(self) -> None:
        while not self._stopping:
            try:
                utt = self._pending.get_nowait()
            except asyncio.QueueEmpty:
                await self._capture(self._silence)
                continue
            try:
                start = Stamp.now().shifted(self.source.queued_duration)
                for i in range(0, utt.pcm.size, self.frame):
                    await self._capture(utt.pcm[i : i + self.frame])
                end = Stamp.now().shifted(self.source.queued_duration)
                if not utt.done.done():
                    utt.done.set_result((start, end))
            except BaseException as e:
                if not utt.done.done():
                    utt.done.set_exception(
                        e if isinstance(e, Exception) else RuntimeError("microphone stopped")
                    )
                raise

    async def aclose(self) -> None:
        if self._task is not None:
            # let the frame in flight complete (its FFI callback must not outlive the process),
            # then cancel whatever is left (an utterance being spoken)
            self._stopping = True
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), 0.5)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.source.aclose()


# --------------------------------------------------------------------------------------------
# the caller
# --------------------------------------------------------------------------------------------


class _StepFailed(Exception):
    pass


def _decode_transcript(raw: str) -> str:
    """livekit-agents may send JSON TimedString lines; return their text, else the raw text."""
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    if not lines:
        return raw
    texts: list[str] = []
    for ln in lines:
        try:
            obj = json.loads(ln)
        except ValueError:
            return raw
        if not isinstance(obj, dict) or "text" not in obj:
            return raw
        texts.append(str(obj["text"]))
    return "".join(texts)


class _Caller:
    def __init__(
        self,
        url: str,
        token: str,
        script: CallerScript,
        on_event: Callable[[CallerEvent], Any] | None,
    ) -> None:
        self.url = url
        self.token = token
        self.script = script
        self.on_event = on_event
        self.report = CallerReport(url=url, agent_audio_rate=script.record_sample_rate)
        self.changed = _Changed()
        self.audio = _AgentAudio(
            script.record_sample_rate,
            script.speech_rms_threshold,
            script.end_silence_ms,
            self.changed,
        )
        self.room = rtc.Room()
        self.mic: _Microphone | None = None
        self.agent: rtc.RemoteParticipant | None = None
        self.agent_track_sid: str | None = None
        self.leaving = False
        self.room_closed = False
        self.tasks: set[asyncio.Task[Any]] = set()

    # -- events ---------------------------------------------------------------------------

    def emit(self, kind: str, message: str, at: Stamp | None = None, **data: Any) -> None:
        event = CallerEvent(kind=kind, at=at or Stamp.now(), message=message, data=data)
        self.report.events.append(event)
        if kind == "error":
            self.report.errors.append(message)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a faulty observer must not break the call
                logger.exception("on_event callback failed")

    def ms_since_join(self, at: Stamp) -> float:
        base = self.report.joined or self.report.started
        return (at.mono - base.mono) * 1000.0

    def spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- room callbacks -------------------------------------------------------------------

    def is_agent(self, p: rtc.RemoteParticipant) -> bool:
        if self.script.agent_identity is not None:
            return p.identity == self.script.agent_identity
        return p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT

    def on_participant(self, p: rtc.RemoteParticipant) -> None:
        if self.agent is None and self.is_agent(p):
            self.agent = p
            self.report.agent_identity = p.identity
            self.report.agent_joined = Stamp.now()
            self.emit("agent_joined", f"agent joined: {p.identity}", identity=p.identity)
            self.changed.notify()

    def on_participant_disconnected(self, p: rtc.RemoteParticipant) -> None:
        if self.agent is not None and p.identity == self.agent.identity:
            self.report.agent_left = Stamp.now()
            self.audio.close_segment()
            self.emit("agent_left", f"agent left: {p.identity}", identity=p.identity)
            self.changed.notify()

    def on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        p: rtc.RemoteParticipant,
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        self.on_participant(p)
        if self.agent is None or p.identity != self.agent.identity:
            return
        if publication.name in self.script.ignore_track_names or self.agent_track_sid is not None:
            return
        self.agent_track_sid = publication.sid
        self.report.agent_track_subscribed = Stamp.now()
        self.emit(
            "agent_track",
            f"subscribed to agent audio track {publication.name!r}",
            track_sid=publication.sid,
            track_name=publication.name,
        )
        self.spawn(self.read_agent_audio(track, publication.sid), "caller-agent-audio")

    def on_track_unsubscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        p: rtc.RemoteParticipant,
    ) -> None:
        if publication.sid == self.agent_track_sid:
            self.agent_track_sid = None  # accept a re-published track
            self.audio.close_segment()

    def on_disconnected(self, reason: Any = None) -> None:
        self.room_closed = True
        if not self.leaving:
            self.emit("warning", f"room disconnected by the server (reason {reason})")
        self.changed.notify()

    def on_text_stream(self, reader: rtc.TextStreamReader, participant_identity: str) -> None:
        self.spawn(self.read_text(reader, participant_identity), "caller-transcript")

    async def read_text(self, reader: rtc.TextStreamReader, identity: str) -> None:
        try:
            raw = await reader.read_all()
        except Exception as e:
            if not self.leaving:
                self.emit("warning", f"transcription stream from {identity} failed: {e}")
            return
        finally:
            reader.close()
        info = reader.info
        attrs = dict(info.attributes or {})
        event = TranscriptEvent(
            participant_identity=identity,
            text=_decode_transcript(raw),
            final=attrs.get(_ATTR_FINAL, "").lower() == "true",
            track_id=attrs.get(_ATTR_TRACK_ID),
            segment_id=attrs.get(_ATTR_SEGMENT_ID),
            stream_id=info.stream_id,
            attributes=attrs,
            received=Stamp.now(),
        )
        self.report.transcripts.append(event)
        if event.final:
            self.emit(
                "transcript",
                f"transcript from {identity}: {event.text!r}",
                at=event.received,
                identity=identity,
                text=event.text,
            )

    async def read_agent_audio(self, track: rtc.Track, sid: str) -> None:
        rate = self.script.record_sample_rate
        stream = rtc.AudioStream(track, sample_rate=rate, num_channels=1)
        try:
            async for ev in stream:
                at = Stamp.now()
                frame = ev.frame
                samples = np.frombuffer(frame.data, dtype=np.int16)
                if frame.num_channels > 1:
                    samples = samples.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
                if frame.sample_rate != rate:
                    samples = resample(samples, frame.sample_rate, rate)
                first = self.audio.first_frame is None
                self.audio.on_frame(samples, at)
                if first:
                    self.report.agent_audio_start = at
                if self.agent_track_sid != sid:
                    break
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    # -- waiting --------------------------------------------------------------------------

    async def wait_until(self, step: str, pred: Callable[[], bool], timeout: float) -> None:
        """Wait for ``pred()``; on timeout raise ``_StepFailed`` naming the step and the wait."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            self.audio.check_stalled()
            if pred():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _StepFailed(
                    f"step '{step}' timed out after waiting {time.monotonic() - started:.1f} s "
                    f"(limit {timeout:.1f} s)"
                )
            await self.changed.wait(min(remaining, _POLL_S))

    def agent_gone(self) -> bool:
        return self.room_closed or self.report.agent_left is not None

    async def wait_agent_quiet(self, step: str) -> Stamp | None:
        """Wait until no agent segment is open; returns the end of the last segment."""
        await self.wait_until(step, lambda: not self.audio.speaking, self.script.max_wait_s)
        return self.audio.segments[-1].end if self.audio.segments else None

    async def wait_loud_after(self, step: str, mono: float) -> Stamp:
        """Wait for the first loud agent frame received at or after ``mono``."""
        await self.wait_until(
            step,
            lambda: self.audio.first_loud_after(mono) is not None or self.agent_gone(),
            self.script.max_wait_s,
        )
        hit = self.audio.first_loud_after(mono)
        if hit is None:
            raise _StepFailed(f"step '{step}' failed: the agent left before speaking")
        return hit

    # -- script ---------------------------------------------------------------------------

    async def run(self) -> CallerReport:
        r = self.report
        script = self.script
        room = self.room
        room.on("participant_connected", self.on_participant)
        room.on("participant_disconnected", self.on_participant_disconnected)
        room.on("track_subscribed", self.on_track_subscribed)
        room.on("track_unsubscribed", self.on_track_unsubscribed)
        room.on("disconnected", self.on_disconnected)
        room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self.on_text_stream)
        step = "connect"
        try:
            try:
                await asyncio.wait_for(
                    room.connect(self.url, self.token, rtc.RoomOptions(auto_subscribe=True)),
                    script.connect_timeout_s,
                )
            except TimeoutError as e:
                raise _StepFailed(
                    f"step 'connect' timed out after {script.connect_timeout_s:.1f} s"
                ) from e
            r.joined = Stamp.now()
            r.room = room.name
            r.identity = room.local_participant.identity
            self.emit("joined", f"joined room {room.name} as {r.identity}", at=r.joined)
            for p in room.remote_participants.values():
                self.on_participant(p)

            step = "publish microphone"
            self.mic = _Microphone(script.mic_sample_rate, script.mic_frame_ms)
            self.mic.start()
            await asyncio.wait_for(
                room.local_participant.publish_track(
                    self.mic.track,
                    rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
                ),
                script.connect_timeout_s,
            )

            step = "agent join"
            await self.wait_until(
                step, lambda: self.agent is not None or self.room_closed, script.max_wait_s
            )
            if self.agent is None:
                raise _StepFailed(f"step '{step}' failed: the room closed before the agent joined")

            if script.wait_for_greeting:
                step = "greeting start"
                r.first_agent_audio = await self.wait_loud_after(step, 0.0)
                self.emit(
                    "greeting_start",
                    f"heard greeting after {self.ms_since_join(r.first_agent_audio):.0f} ms",
                    at=r.first_agent_audio,
                )
                step = "greeting end"
                r.greeting_end = await self.wait_agent_quiet(step)
                dur = _ms_between(r.first_agent_audio, r.greeting_end) or 0.0
                self.emit(
                    "greeting_end", f"greeting ended ({dur:.0f} ms of speech)", at=r.greeting_end
                )

            for i, text in enumerate(script.utterances, start=1):
                turn = TurnReport(index=i, text=text)
                r.turns.append(turn)
                pcm = synthesize(
                    text, script.mic_sample_rate, voice=script.voice, speed_wpm=script.speed_wpm
                )
                pcm = _trim_silence(pcm, script.mic_sample_rate, script.speech_rms_threshold)
                turn.speech_duration_s = pcm.size / script.mic_sample_rate
                step = f"speak turn {i}"
                self.emit("speech_start", f"saying turn {i}: {text!r}", turn=i, text=text)
                start, end = await asyncio.wait_for(
                    self.mic.say(pcm), turn.speech_duration_s + script.max_wait_s
                )
                turn.speech_start, turn.end_of_speech = start, end
                turn.agent_was_speaking = self.audio.speaking
                self.emit(
                    "end_of_speech",
                    f"said turn {i} ({turn.speech_duration_s * 1000:.0f} ms of speech)",
                    at=end,
                    turn=i,
                )
                if turn.agent_was_speaking:
                    self.emit("warning", f"agent was speaking when turn {i} ended", turn=i)
                step = f"reply {i} start"
                turn.first_reply_audio = await self.wait_loud_after(step, end.mono)
                self.emit(
                    "reply_start",
                    f"heard reply {i} after {turn.reply_latency_ms:.0f} ms",
                    at=turn.first_reply_audio,
                    turn=i,
                    latency_ms=turn.reply_latency_ms,
                )
                step = f"reply {i} end"
                turn.reply_end = await self.wait_agent_quiet(step)
                self.emit(
                    "reply_end",
                    f"reply {i} ended ({turn.reply_duration_ms or 0.0:.0f} ms of speech)",
                    at=turn.reply_end,
                    turn=i,
                )

            if not script.hang_up_after:
                step = "agent hang-up"
                await self.wait_until(step, self.agent_gone, script.max_wait_s)
        except _StepFailed as e:
            self.emit("error", str(e), step=step)
        except asyncio.CancelledError:
            self.emit("error", f"cancelled during step '{step}'", step=step)
            raise
        except Exception as e:
            self.emit("error", f"step '{step}' failed: {type(e).__name__}: {e}", step=step)
        finally:
            await self.leave()
        return r

    async def leave(self) -> None:
        self.leaving = True
        if self.mic is not None:
            await self.mic.aclose()
        if self.room.isconnected():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.room.disconnect(), 10.0)
            self.report.left = Stamp.now()
            self.emit("left", "left the room", at=self.report.left)
        self.audio.close_segment()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5.0)
        with contextlib.suppress(Exception):
            self.room.unregister_text_stream_handler(TRANSCRIPTION_TOPIC)
        self.report.segments = list(self.audio.segments)
        self.report.agent_audio = self.audio.array()


async def run_caller(
    url: str,
    token: str,
    script: CallerScript,
    *,
    on_event: Callable[[CallerEvent], Any] | None = None,
) -> CallerReport:
    """Join the room at ``url`` with ``token``, play ``script`` against the agent and report.

    Never raises for call failures (timeouts, connection errors, an agent that leaves): they end
    the script and are listed in ``report.errors``. Every step is bounded by ``connect_timeout_s``
    or ``max_wait_s``. The caller leaves the room at the end; the room itself is not deleted.
    ``on_event`` is called synchronously with each :class:`CallerEvent` (progress, errors).
    """
    return await _Caller(url, token, script, on_event).run()


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m convoi.devstack.caller",
        description="Join a LiveKit room as a simulated web caller, talk to the agent, measure.",
    )
    p.add_argument("--url", required=True, help="LiveKit URL, e.g. ws://127.0.0.1:7880")
    p.add_argument("--token", help="access token (else minted from --api-key/--api-secret/--room)")
    p.add_argument("--api-key", help="mint a token with this key (with --api-secret and --room)")
    p.add_argument("--api-secret")
    p.add_argument("--room")
    p.add_argument("--identity", default="caller")
    p.add_argument("--say", action="append", default=[], help="an utterance (repeatable)")
    p.add_argument("--no-greeting", action="store_true", help="speak without waiting for one")
    p.add_argument("--silence-ms", type=int, default=700, help="agent quiet time = finished")
    p.add_argument("--max-wait", type=float, default=60.0, help="deadline of each step (s)")
    p.add_argument(
        "--stay", action="store_true", help="after the last reply, wait for the agent to hang up"
    )
    p.add_argument("--agent-identity", help="participant to treat as the agent")
    p.add_argument("--json", dest="json_path", help="write the report here")
    p.add_argument("--wav", dest="wav_path", help="write the recorded agent audio here")
    args = p.parse_args(argv)
    if not args.token and not (args.api_key and args.api_secret and args.room):
        p.error("give --token, or --api-key, --api-secret and --room")
    return args


def _print_event(event: CallerEvent) -> None:
    print(
        f"[{time.strftime('%H:%M:%S', time.localtime(event.at.wall))}] {event.message}", flush=True
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit status 0 when every step succeeded."""
    args = _parse_args(argv)
    token = args.token or caller_token(args.api_key, args.api_secret, args.room, args.identity)
    script = CallerScript(
        utterances=list(args.say),
        wait_for_greeting=not args.no_greeting,
        end_silence_ms=args.silence_ms,
        max_wait_s=args.max_wait,
        hang_up_after=not args.stay,
        agent_identity=args.agent_identity,
    )
    report = asyncio.run(run_caller(args.url, token, script, on_event=_print_event))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report.to_dict(), indent=2))
        print(f"report written to {args.json_path}")
    if args.wav_path:
        report.save_wav(args.wav_path)
        print(f"agent audio ({report.agent_audio_seconds:.1f} s) written to {args.wav_path}")
    lat = report.reply_latencies_ms
    print(
        "summary: greeting latency "
        + (
            f"{report.greeting_latency_ms:.0f} ms"
            if report.greeting_latency_ms is not None
            else "n/a"
        )
        + ", reply latencies "
        + (", ".join(f"{x:.0f} ms" if x is not None else "n/a" for x in lat) or "n/a")
        + (f", errors: {'; '.join(report.errors)}" if report.errors else ", ok")
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
