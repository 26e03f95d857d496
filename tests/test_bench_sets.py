"""The benchmark's caller sets and command line (pure; no server): the pausing utterances, the
emulators' script for them, the sets a run covers, ``--ours-env``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from convoi.devstack.bench import parse_args
from convoi.devstack.bench.run import Latency, Stack, parse_env, side_env
from convoi.devstack.bench.sets import (
    CALLER_SETS,
    PAUSING_REPLIES,
    PAUSING_UTTERANCES,
    parse_sets,
    pausing_scenario,
    stt_lines,
    utterances_for,
)
from convoi.devstack.caller import PausingUtterance
from convoi.devstack.demo import SCENARIO, UTTERANCES
from convoi.devstack.emulators.llm_script import choose_answer
from convoi.devstack.emulators.scenario import Scenario
from convoi.worker.turn_timing import EVENTS_ENV


def test_the_pausing_list_spreads_its_pauses_over_450_to_900_ms() -> None:
    pauses = [p for u in PAUSING_UTTERANCES for p in u.pauses_ms]
    assert sorted(pauses) == list(range(450, 901, 50))  # each 50 ms step once
    assert len(PAUSING_REPLIES) == len(PAUSING_UTTERANCES)


def test_each_fragment_of_the_list_is_one_stt_line_at_the_emulators_endpointing() -> None:
    lines = stt_lines(PAUSING_UTTERANCES, 400)
    assert lines == [f for u in PAUSING_UTTERANCES for f in u.fragments]


def test_fragments_across_a_pause_shorter_than_the_endpointing_are_one_line() -> None:
    utt = PausingUtterance(("a", "b", "c"), (300, 700))
    assert stt_lines(["plain line", utt], 400) == ["plain line", "a b", "c"]
    with pytest.raises(ValueError, match="too close"):
        stt_lines([PausingUtterance(("a", "b"), (420,))], 400)


def _reply(scenario: Scenario, user: str) -> str:
    messages = [{"role": "system", "content": "x"}, {"role": "user", "content": user}]
    return choose_answer(scenario, messages, {}).text


def test_the_scenario_answers_each_utterance_and_only_okay_to_a_fragment() -> None:
    scenario = Scenario.model_validate(
        pausing_scenario(PAUSING_UTTERANCES, {"stt_final_ms": 250, "llm_ttft_ms": 400})
    )
    assert scenario.latency.stt_final_ms == 250 and scenario.stt.silence_ms == 400
    assert scenario.caller == stt_lines(PAUSING_UTTERANCES, 400)
    for utt, (_, say) in zip(PAUSING_UTTERANCES, PAUSING_REPLIES, strict=True):
        assert _reply(scenario, utt.fragments[-1]) == say  # the turn after the last pause
        assert _reply(scenario, utt.text) == say  # the whole utterance in one turn
        assert _reply(scenario, utt.fragments[0]) == "Okay."  # an end of turn in a pause


def test_calls_walk_the_pausing_list_and_each_side_says_the_same() -> None:
    calls = [utterances_for("pausing", i, 2, UTTERANCES) for i in range(4)]
    assert [u for c in calls for u in c] == list(PAUSING_UTTERANCES)
    assert utterances_for("pausing", 4, 2, UTTERANCES) == calls[0]
    assert utterances_for("pausing", 1, 2, UTTERANCES) == calls[1]


def test_plain_callers_say_the_demo_lines_as_always() -> None:
    for i in range(3):
        assert utterances_for("plain", i, 3, UTTERANCES) == [
            UTTERANCES[0],
            UTTERANCES[1],
            UTTERANCES[0],
        ]
    with pytest.raises(ValueError):
        utterances_for("mumbling", 0, 1, UTTERANCES)


class _Emulators:
    def __init__(self) -> None:
        self.loaded: list[dict[str, Any]] = []

    def load_scenario(self, scenario: dict[str, Any]) -> None:
        self.loaded.append(scenario)


def _stack(tmp_path: Path) -> tuple[Stack, _Emulators]:
    stack = Stack(tmp_path)
    emulators = _Emulators()
    stack.emulators = emulators  # type: ignore[assignment]
    return stack, emulators


def test_a_plain_call_loads_the_demo_scenario_with_the_latency(tmp_path: Path) -> None:
    stack, emulators = _stack(tmp_path)
    said = stack.load(Latency(250, 400, 150), turns=2)
    assert said == UTTERANCES[:2]
    expected = yaml.safe_load(SCENARIO.read_text())
    expected["latency"] = {"stt_final_ms": 250, "llm_ttft_ms": 400, "tts_ttfb_ms": 150}
    assert emulators.loaded == [expected]


def test_a_pausing_call_loads_its_fragments_as_the_stt_lines(tmp_path: Path) -> None:
    stack, emulators = _stack(tmp_path)
    said = stack.load(Latency(), turns=2, caller_set="pausing", call_index=1)
    assert said == list(PAUSING_UTTERANCES[2:4])
    (scenario,) = emulators.loaded
    assert scenario["caller"] == [f for u in PAUSING_UTTERANCES[2:4] for f in u.fragments]
    Scenario.model_validate(scenario)


def test_both_sets_run_by_default_and_smoke_runs_plain_only() -> None:
    assert parse_args([]).callers == CALLER_SETS == ("plain", "pausing")
    smoke = parse_args(["--smoke"])
    assert smoke.callers == ("plain",) and (smoke.calls, smoke.turns) == (1, 1)
    assert parse_args(["--smoke", "--callers", "pausing"]).callers == ("pausing",)
    assert parse_args(["--callers", "pausing, plain,pausing"]).callers == ("pausing", "plain")


@pytest.mark.parametrize("bad", ["", "plain,mumbling", ","])
def test_unknown_caller_sets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_sets(bad)
    with pytest.raises(SystemExit):
        parse_args(["--callers", bad])


def test_ours_env_reaches_our_worker_only() -> None:
    args = parse_args(["--ours-env", "CONVOI_X=1", "--ours-env", "CONVOI_Y=a=b"])
    ours_env = dict(args.ours_env)
    assert ours_env == {"CONVOI_X": "1", "CONVOI_Y": "a=b"}
    base = {"LIVEKIT_URL": "ws://x", "CONVOI_X": "0"}
    ours = side_env(base, "ours", Path("/tmp/e-ours"), ours_env)
    stock = side_env(base, "stock", Path("/tmp/e-stock"), ours_env)
    assert ours == {**base, EVENTS_ENV: "/tmp/e-ours", "CONVOI_X": "1", "CONVOI_Y": "a=b"}
    assert stock == {**base, EVENTS_ENV: "/tmp/e-stock"}
    assert parse_args([]).ours_env == []


@pytest.mark.parametrize("bad", ["NOVALUE", "=1", " X=1"])
def test_ours_env_needs_key_equals_value(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_env(bad)
    with pytest.raises(SystemExit):
        parse_args(["--ours-env", bad])
