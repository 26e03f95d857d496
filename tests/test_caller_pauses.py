"""The pausing caller (no server, no room): its audio plan, the cut-in verdict, the microphone's
marks, and a pausing turn played against a scripted agent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from convoi.devstack.caller import CallerScript, PausingUtterance, Stamp
from convoi.devstack.caller.media import _Microphone
from convoi.devstack.caller.pauses import (
    classify_turn,
    pause_plan,
    utterance_from_json,
    utterance_text,
    utterance_to_json,
)
from convoi.devstack.caller.session import _Caller

# fragments said at 0-1 s, 1.6-2.5 s and 3.3-4 s: pauses 1-1.6 s and 2.5-3.3 s
SPANS = [(0.0, 1.0), (1.6, 2.5), (3.3, 4.0)]


def test_a_pausing_utterance_needs_a_pause_between_each_two_fragments() -> None:
    utt = PausingUtterance(("I would like to check", "the status of my order"), (650,))
    assert utt.text == "I would like to check the status of my order" == utterance_text(utt)
    for fragments, pauses in (
        (("alone",), ()),
        (("a", "b"), ()),
        (("a", "b"), (400, 500)),
        (("a", " "), (400,)),
        (("a", "b"), (0,)),
    ):
        with pytest.raises(ValueError):
            PausingUtterance(fragments, pauses)


def test_utterances_go_through_json_unchanged() -> None:
    utt = PausingUtterance(("a b", "c", "d"), (450, 900))
    assert utterance_to_json(utt) == {"fragments": ["a b", "c", "d"], "pauses_ms": [450, 900]}
    assert utterance_from_json(utterance_to_json(utt)) == utt
    assert utterance_from_json(utterance_to_json("plain line")) == "plain line"


def test_the_plan_lays_fragments_end_to_end_with_the_pauses_as_silence() -> None:
    plan = pause_plan([100, 50, 30], [650, 400], 1000)
    assert plan.spans == ((0, 100), (750, 800), (1200, 1230))
    assert plan.total == 1230
    assert plan.marks == (0, 100, 750, 800, 1200, 1230)
    with pytest.raises(ValueError):
        pause_plan([100, 50], [], 1000)


@pytest.mark.parametrize(
    ("onsets", "kind", "during"),
    [
        ([], "clean", None),
        ([4.0], "clean", None),  # at the real end of speech: a reply
        ([4.3], "clean", None),
        ([-2.0], "clean", None),  # the previous turn's reply
        ([1.0], "cut_in", "pause 1"),  # the moment the first fragment ended
        ([1.4, 4.2], "cut_in", "pause 1"),
        ([1.8], "cut_in", "fragment 2"),
        ([2.7], "cut_in", "pause 2"),
        ([3.9], "cut_in", "fragment 3"),
        ([0.5], "overlap", None),  # before any pause: not an end of turn decided on one
        ([0.5, 1.2], "overlap", None),
    ],
)
def test_the_verdict_on_a_turn(onsets: list[float], kind: str, during: str | None) -> None:
    verdict = classify_turn(SPANS, onsets)
    assert (verdict.kind, verdict.during) == (kind, during)
    if kind != "clean":
        assert verdict.at == min(t for t in onsets if t >= 0)


def test_an_agent_speaking_when_the_turn_began_is_an_overlap() -> None:
    verdict = classify_turn(SPANS, [-0.5, 1.2], speaking_at_start=True)
    assert verdict.kind == "overlap" and verdict.at is None


async def test_the_microphone_stamps_each_mark_as_its_sample_leaves() -> None:
    mic = _Microphone(48000, 10)
    mic.start()
    try:
        pcm = np.full(14400, 1000, dtype=np.int16)  # 300 ms
        start, end, marks = await asyncio.wait_for(mic.say_marked(pcm, (0, 4800, 7200, 14400)), 30)
    finally:
        await mic.aclose()
    assert marks[0] == start and marks[-1] == end
    offsets = [m.mono - start.mono for m in marks]
    assert offsets == sorted(offsets)
    # real-time pacing: a sample never leaves before its time (a busy machine only delays it)
    for got, nominal in zip(offsets, (0.0, 0.1, 0.15, 0.3), strict=True):
        assert got >= nominal - 0.02


# -- a pausing turn against a scripted agent ----------------------------------------------------

RATE = 16000
LOUD = np.full(RATE // 50, 3000, dtype=np.int16)  # 20 ms frames
QUIET = np.zeros(RATE // 50, dtype=np.int16)


class _ScriptedMic:
    """Says instantly: the fragments as if they had left at ``SPANS`` (seconds from now), and
    feeds the caller the agent audio heard meanwhile (loud from each onset for ``talk_ms``)."""

    def __init__(self, caller: _Caller, onsets: Sequence[float], talk_ms: int = 400) -> None:
        self.caller, self.onsets, self.talk_ms = caller, onsets, talk_ms

    async def say_marked(
        self, pcm: np.ndarray, marks: tuple[int, ...]
    ) -> tuple[Stamp, Stamp, list[Stamp]]:
        base = Stamp.now()
        stamps = [base.shifted(t) for span in SPANS for t in span]
        ms = 0  # whole milliseconds, in 20 ms frames
        for onset in (round(o * 1000) for o in sorted(self.onsets)):
            ms = max(ms, onset - 1000)
            while ms < onset + self.talk_ms + 1000:  # quiet, the speech, quiet to close it
                loud = onset <= ms < onset + self.talk_ms
                self.caller.audio.on_frame(LOUD if loud else QUIET, base.shifted(ms / 1000))
                ms += 20
        return stamps[0], stamps[-1], stamps

    async def aclose(self) -> None:
        return None


def _pausing_caller(onsets: Sequence[float]) -> _Caller:
    script = CallerScript(
        record_sample_rate=RATE, max_wait_s=5, pause_settle_s=0.05, cut_in_reply_wait_s=0.05
    )
    caller = _Caller("ws://unused", "token", script, None)
    caller.mic = _ScriptedMic(caller, onsets)  # type: ignore[assignment]
    return caller


UTT = PausingUtterance(("I would like", "to check", "my order"), (600, 800))


async def test_a_reply_during_a_pause_is_a_false_cut_in_and_the_turn_still_completes() -> None:
    caller = _pausing_caller([1.3, 4.5])  # cut in during pause 1, then the real reply
    await asyncio.wait_for(caller.pausing_turn(1, UTT), 30)
    (turn,) = caller.report.turns
    assert turn.false_cut_in and turn.cut_in_during == "pause 1"
    assert not turn.agent_was_speaking
    assert turn.cut_in_at is not None and turn.end_of_speech is not None
    assert turn.cut_in_at.mono - turn.fragments[0].start.mono == pytest.approx(1.3, abs=1e-6)
    assert [f.text for f in turn.fragments] == list(UTT.fragments)
    assert turn.pauses_ms == pytest.approx([600, 800])
    assert turn.end_of_speech == turn.fragments[-1].end
    assert turn.first_reply_audio is not None and turn.reply_latency_ms == pytest.approx(500)
    assert turn.reply_end is not None and not caller.report.errors
    data = turn.to_dict()
    assert data["false_cut_in"] is True and data["cut_in_during"] == "pause 1"
    assert len(data["fragments"]) == 3 and data["fragments"][1]["text"] == "to check"


async def test_a_cut_in_with_no_reply_after_the_end_does_not_stop_the_script() -> None:
    caller = _pausing_caller([2.0])  # over fragment 2, nothing after the real end
    await asyncio.wait_for(caller.pausing_turn(1, UTT), 30)
    (turn,) = caller.report.turns
    assert turn.false_cut_in and turn.cut_in_during == "fragment 2"
    assert not caller.report.errors


async def test_a_reply_after_the_real_end_is_not_a_cut_in() -> None:
    caller = _pausing_caller([4.8])
    await asyncio.wait_for(caller.pausing_turn(1, UTT), 30)
    (turn,) = caller.report.turns
    assert not turn.false_cut_in and not turn.agent_was_speaking and turn.cut_in_at is None
    assert turn.reply_latency_ms == pytest.approx(800)
    assert turn.to_dict()["false_cut_in"] is False


async def test_speech_before_the_first_fragment_ended_is_an_overlap_not_a_cut_in() -> None:
    caller = _pausing_caller([0.5, 4.6])
    await asyncio.wait_for(caller.pausing_turn(1, UTT), 30)
    (turn,) = caller.report.turns
    assert turn.agent_was_speaking and not turn.false_cut_in
