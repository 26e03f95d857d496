"""What the simulated caller measured: timestamps, turns, agent speech segments, transcripts."""

from __future__ import annotations

import base64
import time
import wave
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convoi.devstack.audio import SPEECH_RMS_THRESHOLD
from convoi.devstack.caller.pauses import Utterance

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
class FragmentReport:
    """One fragment of a pausing utterance: its words and when its speech left the microphone."""

    text: str
    start: Stamp
    end: Stamp

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"text": self.text, "start": self.start.to_dict(), "end": self.end.to_dict()}


@dataclass
class TurnReport:
    """One caller utterance and the agent's reply to it.

    For a pausing utterance (:class:`~convoi.devstack.caller.pauses.PausingUtterance`)
    ``fragments`` and ``pauses_ms`` say how it was said, ``end_of_speech`` is the real end of
    speech (the last fragment's end) and ``false_cut_in`` whether the agent's reply audio started
    before it (:func:`~convoi.devstack.caller.pauses.classify_turn`).
    """

    index: int
    text: str
    speech_start: Stamp | None = None
    end_of_speech: Stamp | None = None
    first_reply_audio: Stamp | None = None
    reply_end: Stamp | None = None
    speech_duration_s: float = 0.0
    agent_was_speaking: bool = False
    """The agent was already talking when the caller finished (overlap / barge-in); for a pausing
    utterance that was not a cut-in: the agent talked before the first fragment ended."""
    fragments: list[FragmentReport] = field(default_factory=list)
    """A pausing utterance's fragments (empty for a plain one)."""
    pauses_ms: list[float] = field(default_factory=list)
    """The silences between the fragments as they left the microphone."""
    false_cut_in: bool = False
    """The agent's reply audio started during a pause or over a later fragment."""
    cut_in_at: Stamp | None = None
    """The agent's speech onset that made the turn a cut-in (or an overlap)."""
    cut_in_during: str | None = None
    """Where the cut-in fell: ``"pause N"`` or ``"fragment N"``."""
    extra_replies: int = 0
    """Agent speech that started after the reply had ended, before the next turn (a reply to an
    early end of turn followed by one to the whole utterance)."""

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
            "fragments": [f.to_dict() for f in self.fragments],
            "pauses_ms": list(self.pauses_ms),
            "false_cut_in": self.false_cut_in,
            "cut_in_at": _stamp_dict(self.cut_in_at),
            "cut_in_during": self.cut_in_during,
            "extra_replies": self.extra_replies,
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

    utterances: Sequence[Utterance] = field(default_factory=list)
    """Plain lines are said at once; a ``PausingUtterance`` in fragments with its pauses."""
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
    wait_for_room_close: bool = False
    """With ``hang_up_after`` False: stay until the server closes the room, whichever agents come
    and go (a call whose job processes are killed and resumed)."""
    follow_new_agent: bool = False
    """When the agent has left, take the next agent that joins as the agent (a resumed call)."""
    pause_settle_s: float = 2.5
    """After the reply to a pausing utterance ended: agent speech starting within this long is
    part of the turn (a second reply, to the whole utterance, after one to a fragment); the next
    turn starts once the agent stayed quiet this long. Plain turns never wait for it."""
    cut_in_reply_wait_s: float = 8.0
    """After a cut-in: how long to wait for agent speech after the real end of speech (the agent
    may have said all it had to say during the pause)."""
    before_turn: Callable[[int], Awaitable[None]] | None = None
    """Awaited before each utterance, with its 1-based index (a test's hook: e.g. kill the worker
    and wait for the call to be resumed)."""


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
