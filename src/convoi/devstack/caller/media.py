"""The caller's microphone (paced speech and silence) and the agent-audio listener."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from dataclasses import dataclass

import numpy as np
from livekit import rtc

from convoi.devstack.audio import rms
from convoi.devstack.caller.report import AgentSegment, Stamp

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
        self.onsets: list[Stamp] = []
        """Receipt of each segment's first loud frame (the agent started speaking)."""
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
                self.onsets.append(at)
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
    done: asyncio.Future[tuple[Stamp, Stamp, list[Stamp]]]
    marks: tuple[int, ...] = ()


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


def _in(marks: tuple[int, ...], first: int, n: int) -> list[int]:
    """The offsets of ``marks`` in ``[first, first + n)``."""
    return [m for m in marks if first <= m < first + n]


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
        start, end, _ = await self.say_marked(pcm, ())
        return start, end

    async def say_marked(
        self, pcm: np.ndarray, marks: tuple[int, ...]
    ) -> tuple[Stamp, Stamp, list[Stamp]]:
        """Like :meth:`say`, plus the moment each sample offset of ``marks`` left (in order)."""
        done: asyncio.Future[tuple[Stamp, Stamp, list[Stamp]]] = (
            asyncio.get_running_loop().create_future()
        )
        await self._pending.put(_Utterance(pcm, done, marks))
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
                marked: list[Stamp] = []
                for i in range(0, utt.pcm.size, self.frame):
                    if utt.marks:  # sample i leaves once what is queued has
                        at = start if i == 0 else Stamp.now().shifted(self.source.queued_duration)
                        marked += [
                            at.shifted((m - i) / self.rate) for m in _in(utt.marks, i, self.frame)
                        ]
                    await self._capture(utt.pcm[i : i + self.frame])
                end = Stamp.now().shifted(self.source.queued_duration)
                marked += [end for _ in utt.marks[len(marked) :]]  # offsets at (or past) the end
                if not utt.done.done():
                    utt.done.set_result((start, end, marked))
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
