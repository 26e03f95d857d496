"""Running the caller's script in a room."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from livekit import rtc

from convoi.devstack.audio import resample, synthesize
from convoi.devstack.caller.media import _AgentAudio, _Changed, _Microphone, _trim_silence
from convoi.devstack.caller.pauses import PausePlan, PausingUtterance, classify_turn, pause_plan
from convoi.devstack.caller.report import (
    _ATTR_FINAL,
    _ATTR_SEGMENT_ID,
    _ATTR_TRACK_ID,
    _POLL_S,
    TRANSCRIPTION_TOPIC,
    CallerEvent,
    CallerReport,
    CallerScript,
    FragmentReport,
    Stamp,
    TranscriptEvent,
    TurnReport,
    _ms_between,
)

logger = logging.getLogger("convoi.devstack.caller")

_MAX_EXTRA_REPLIES = 4
"""Agent speech starting again after a pausing turn's reply: waited for at most this often."""


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
        self.step = "start"
        """The script's current step (named in errors)."""

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
        if (
            self.script.follow_new_agent
            and self.agent is not None
            and self.report.agent_left is not None
            and p.identity != self.agent.identity
            and self.is_agent(p)
        ):
            self.agent, self.report.agent_left = None, None  # a new agent took the call over
            self.agent_track_sid = None
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

    async def plain_turn(self, i: int, text: str) -> None:
        """Say ``text`` at once, then wait for the reply to start and end."""
        script, r = self.script, self.report
        assert self.mic is not None
        turn = TurnReport(index=i, text=text)
        r.turns.append(turn)
        pcm = synthesize(
            text, script.mic_sample_rate, voice=script.voice, speed_wpm=script.speed_wpm
        )
        pcm = _trim_silence(pcm, script.mic_sample_rate, script.speech_rms_threshold)
        turn.speech_duration_s = pcm.size / script.mic_sample_rate
        self.step = f"speak turn {i}"
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
        self.step = f"reply {i} start"
        turn.first_reply_audio = await self.wait_loud_after(self.step, end.mono)
        self.emit(
            "reply_start",
            f"heard reply {i} after {turn.reply_latency_ms:.0f} ms",
            at=turn.first_reply_audio,
            turn=i,
            latency_ms=turn.reply_latency_ms,
        )
        self.step = f"reply {i} end"
        turn.reply_end = await self.wait_agent_quiet(self.step)
        self.emit(
            "reply_end",
            f"reply {i} ended ({turn.reply_duration_ms or 0.0:.0f} ms of speech)",
            at=turn.reply_end,
            turn=i,
        )

    def fragments_pcm(self, utt: PausingUtterance) -> tuple[np.ndarray, PausePlan]:
        """The utterance's audio: each fragment's speech, silence for each pause; its plan."""
        script = self.script
        rate = script.mic_sample_rate
        pcms = [
            _trim_silence(
                synthesize(text, rate, voice=script.voice, speed_wpm=script.speed_wpm),
                rate,
                script.speech_rms_threshold,
            )
            for text in utt.fragments
        ]
        plan = pause_plan([p.size for p in pcms], utt.pauses_ms, rate)
        pcm = np.zeros(plan.total, dtype=np.int16)
        for (a, b), fragment in zip(plan.spans, pcms, strict=True):
            pcm[a:b] = fragment
        return pcm, plan

    def judge(self, turn: TurnReport, speaking_at_start: bool) -> None:
        """Classify the turn just said (cut-in, overlap or clean) into ``turn``."""
        onsets = {o.mono: o for o in self.audio.onsets}
        verdict = classify_turn(
            [(f.start.mono, f.end.mono) for f in turn.fragments],
            onsets,
            speaking_at_start=speaking_at_start,
        )
        turn.cut_in_at = None if verdict.at is None else onsets[verdict.at]
        turn.false_cut_in = verdict.kind == "cut_in"
        turn.agent_was_speaking = verdict.kind == "overlap"
        turn.cut_in_during = verdict.during
        if turn.false_cut_in:
            self.emit(
                "warning", f"agent cut in on turn {turn.index} ({verdict.during})", turn=turn.index
            )
        elif turn.agent_was_speaking:
            self.emit("warning", f"agent talked over turn {turn.index}", turn=turn.index)

    async def pausing_turn(self, i: int, utt: PausingUtterance) -> None:
        """Say ``utt`` fragment by fragment with its pauses, judge what the agent did meanwhile,
        wait for the reply (if any after a cut-in) and for the agent to settle."""
        script = self.script
        assert self.mic is not None
        turn = TurnReport(index=i, text=utt.text)
        self.report.turns.append(turn)
        pcm, plan = self.fragments_pcm(utt)
        turn.speech_duration_s = plan.total / script.mic_sample_rate
        self.step = f"speak turn {i}"
        self.emit("speech_start", f"saying turn {i} in {len(utt.fragments)} fragments", turn=i)
        speaking_at_start = self.audio.speaking
        start, end, marks = await asyncio.wait_for(
            self.mic.say_marked(pcm, plan.marks), turn.speech_duration_s + script.max_wait_s
        )
        turn.fragments = [
            FragmentReport(text, marks[2 * k], marks[2 * k + 1])
            for k, text in enumerate(utt.fragments)
        ]
        turn.pauses_ms = [
            (b.start.mono - a.end.mono) * 1000 for a, b in itertools.pairwise(turn.fragments)
        ]
        turn.speech_start, turn.end_of_speech = start, end
        self.emit("end_of_speech", f"said turn {i}", at=end, turn=i)
        self.judge(turn, speaking_at_start)
        self.step = f"reply {i} start"
        if turn.false_cut_in or turn.agent_was_speaking:  # its reply may be over already
            turn.first_reply_audio = await self.loud_after_or_none(
                end.mono, script.cut_in_reply_wait_s
            )
        else:
            turn.first_reply_audio = await self.wait_loud_after(self.step, end.mono)
        if turn.first_reply_audio is not None:
            self.emit("reply_start", f"heard reply {i}", at=turn.first_reply_audio, turn=i)
        self.step = f"reply {i} end"
        turn.reply_end = await self.wait_agent_quiet(self.step)
        turn.extra_replies = await self.settle()
        self.emit("reply_end", f"reply {i} ended", at=turn.reply_end, turn=i)

    async def loud_after_or_none(self, mono: float, timeout: float) -> Stamp | None:
        """The first loud agent frame at or after ``mono`` within ``timeout``, else None."""
        await self.poll(
            lambda: self.audio.first_loud_after(mono) is not None or self.agent_gone(), timeout
        )
        return self.audio.first_loud_after(mono)

    async def settle(self) -> int:
        """Wait until the agent stayed quiet ``pause_settle_s``; how many times it spoke again."""
        extra = 0
        while extra < _MAX_EXTRA_REPLIES and not self.agent_gone():
            if not await self.poll(
                functools.partial(self.spoke_since, time.monotonic()),
                self.script.pause_settle_s,
            ):
                break
            extra += 1
            await self.wait_agent_quiet(self.step)
        return extra

    def spoke_since(self, mono: float) -> bool:
        """The agent started speaking at or after ``mono``."""
        return bool(self.audio.onsets) and self.audio.onsets[-1].mono >= mono

    async def poll(self, pred: Callable[[], bool], timeout: float) -> bool:
        """Wait up to ``timeout`` for ``pred()``; whether it came true (never raises)."""
        deadline = time.monotonic() + timeout
        while True:
            self.audio.check_stalled()
            if pred():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await self.changed.wait(min(remaining, _POLL_S))

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
        self.step = "connect"
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

            self.step = "publish microphone"
            self.mic = _Microphone(script.mic_sample_rate, script.mic_frame_ms)
            self.mic.start()
            await asyncio.wait_for(
                room.local_participant.publish_track(
                    self.mic.track,
                    rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
                ),
                script.connect_timeout_s,
            )

            self.step = "agent join"
            await self.wait_until(
                self.step, lambda: self.agent is not None or self.room_closed, script.max_wait_s
            )
            if self.agent is None:
                raise _StepFailed(
                    f"step '{self.step}' failed: the room closed before the agent joined"
                )

            if script.wait_for_greeting:
                self.step = "greeting start"
                r.first_agent_audio = await self.wait_loud_after(self.step, 0.0)
                self.emit(
                    "greeting_start",
                    f"heard greeting after {self.ms_since_join(r.first_agent_audio):.0f} ms",
                    at=r.first_agent_audio,
                )
                self.step = "greeting end"
                r.greeting_end = await self.wait_agent_quiet(self.step)
                dur = _ms_between(r.first_agent_audio, r.greeting_end) or 0.0
                self.emit(
                    "greeting_end", f"greeting ended ({dur:.0f} ms of speech)", at=r.greeting_end
                )

            for i, utterance in enumerate(script.utterances, start=1):
                if script.before_turn is not None:
                    self.step = f"before turn {i}"
                    await script.before_turn(i)
                if isinstance(utterance, PausingUtterance):
                    await self.pausing_turn(i, utterance)
                else:
                    await self.plain_turn(i, utterance)

            if not script.hang_up_after:
                self.step = "agent hang-up"
                gone = (lambda: self.room_closed) if script.wait_for_room_close else self.agent_gone
                await self.wait_until(self.step, gone, script.max_wait_s)
        except _StepFailed as e:
            self.emit("error", str(e), step=self.step)
        except asyncio.CancelledError:
            self.emit("error", f"cancelled during step '{self.step}'", step=self.step)
            raise
        except Exception as e:
            self.emit(
                "error", f"step '{self.step}' failed: {type(e).__name__}: {e}", step=self.step
            )
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
