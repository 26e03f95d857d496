"""The benchmark's arithmetic (pure): a reply decomposed from its timestamps, false cut-ins, the
tables."""

from __future__ import annotations

from typing import Any

import pytest

from convoi.devstack.bench.measures import (
    JOIN_MEASURES,
    RATE_MEASURES,
    REPLY_MEASURES,
    Rate,
    call_measures,
    comparison_rows,
    comparison_table,
    pause_outcomes,
    pause_rows,
    pause_table,
    percentile,
    rate_cell,
    rate_rows,
    reply_parts,
)

EOS, HEARD = 100.0, 101.0


def _records() -> list[dict[str, Any]]:
    return [
        {
            "provider": "stt",
            "transcripts": [
                {"is_final": False, "sent_at": 100.2},
                {"is_final": True, "sent_at": 100.4},
            ],
        },
        {"provider": "stt", "transcripts": [{"is_final": True, "sent_at": 90.0}]},  # earlier turn
        {"provider": "llm", "time": 99.0, "first_token_time": 99.1},  # the greeting's turn
        {"provider": "llm", "time": 100.6, "first_token_time": 100.65},
        {"provider": "tts", "first_text_time": 100.7, "first_audio_time": 100.8},
        {"provider": "tts", "first_text_time": 100.9, "first_audio_time": 100.95},
    ]


def test_a_reply_is_decomposed_from_the_first_moments_inside_its_window() -> None:
    parts = reply_parts(EOS, HEARD, _records(), [100.5])
    assert parts == pytest.approx(
        {
            "eos_stt": 400,
            "eos_eou": 500,
            "eou_llm": 100,
            "llm_ttft": 50,
            "llm_tts": 50,
            "tts_ttfb": 100,
            "tts_caller": 200,
            "eou_heard": 500,
            "overhead": 1000 - 400 - 50 - 100,
        }
    )


def test_a_preemptive_request_ahead_of_the_decision_is_a_negative_part() -> None:
    parts = reply_parts(EOS, HEARD, _records(), [100.7])
    assert parts["eou_llm"] == pytest.approx(-100)


def test_a_preemptive_request_cancelled_before_its_first_token_is_not_the_reply() -> None:
    records = [*_records(), {"provider": "llm", "time": 100.45, "first_token_time": None}]
    parts = reply_parts(EOS, HEARD, records, [100.5])
    assert parts["eou_llm"] == pytest.approx(100) and parts["llm_ttft"] == pytest.approx(50)


def test_missing_moments_leave_their_parts_out() -> None:
    parts = reply_parts(EOS, HEARD, [], [])
    assert parts == {}


def _result(**turn: Any) -> dict[str, Any]:
    return {
        "dispatched": 10.0,
        "report": {
            "agent_joined": {"mono": 0.0, "wall": 10.4},
            "first_agent_audio": {"mono": 0.0, "wall": 10.7},
            "latencies_ms": {"greeting": 250.0},
            "turns": [
                {
                    "end_of_speech": {"mono": 0.0, "wall": EOS},
                    "first_reply_audio": {"mono": 0.0, "wall": HEARD},
                    **turn,
                }
            ],
        },
    }


def test_call_measures_from_a_caller_report() -> None:
    got = call_measures(_result(), _records(), [100.5])
    assert got["join"] == pytest.approx([400])
    assert got["greeting"] == [250.0]
    assert got["agent_greeting"] == pytest.approx([300])
    assert got["reply"] == pytest.approx([1000])
    assert got["llm_ttft"] == pytest.approx([50])


def test_a_turn_the_agent_talked_over_is_counted_apart() -> None:
    got = call_measures(_result(agent_was_speaking=True), _records(), [100.5])
    assert "reply" not in got and got["overlaps"] == [1.0]


def test_the_ratio_column_divides_the_p50s_and_skips_non_positive_ones() -> None:
    ours = {"eos_stt": [400.0, 500.0, 600.0], "eou_llm": [-10.0]}
    stock = {"eos_stt": [800.0, 1000.0, 1200.0], "eou_llm": [-20.0]}
    rows = {r["key"]: r for r in comparison_rows(ours, stock, REPLY_MEASURES)}
    assert rows["eos_stt"]["ratio"] == pytest.approx(0.5)
    assert rows["eou_llm"]["ratio"] is None
    assert rows["llm_ttft"]["ours"] is None
    table = comparison_table(ours, stock, REPLY_MEASURES)
    assert "| 500 / 600 | 1000 / 1200 | 0.50 | 3, 3 |" in table


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.95) == 5.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0


# -- false cut-ins (pausing callers) ------------------------------------------------------------


def test_a_cut_in_turn_counts_as_one_and_its_reply_is_left_out() -> None:
    got = call_measures(_result(false_cut_in=True, cut_in_during="pause 1"), _records(), [100.5])
    assert got["cut_in"] == [1.0]
    assert "reply" not in got and "eos_stt" not in got and "overlaps" not in got


def test_every_other_spoken_turn_counts_as_zero_with_its_reply() -> None:
    got = call_measures(_result(), _records(), [100.5])
    assert got["cut_in"] == [0.0] and got["reply"] == pytest.approx([1000])
    talked_over = call_measures(_result(agent_was_speaking=True), _records(), [100.5])
    assert talked_over["cut_in"] == [0.0]


def test_a_turn_never_spoken_to_its_end_is_not_counted() -> None:
    got = call_measures(_result(end_of_speech=None, first_reply_audio=None))
    assert "cut_in" not in got and "reply" not in got


def test_a_cut_in_without_a_reply_after_the_end_still_counts() -> None:
    got = call_measures(_result(false_cut_in=True, first_reply_audio=None))
    assert got["cut_in"] == [1.0] and "reply" not in got


def test_the_false_cut_in_row_shows_count_turns_and_rate() -> None:
    ours = {"cut_in": [1.0] * 3 + [0.0] * 13, "reply": [800.0]}
    stock = {"cut_in": [1.0] * 2 + [0.0] * 14, "reply": [900.0]}
    (row,) = rate_rows(ours, stock, RATE_MEASURES)
    assert row["ours"] == Rate(3, 16, 3 / 16) and row["stock"] == Rate(2, 16, 2 / 16)
    assert row["ratio"] == pytest.approx(1.5)
    assert rate_cell(row["ours"]) == "3 / 16 (19 %)"
    table = comparison_table(ours, stock, JOIN_MEASURES, RATE_MEASURES)
    assert "| false cut-ins (turns) | 3 / 16 (19 %) | 2 / 16 (12 %) | 1.50 | 16, 16 |" in table
    assert "| end of caller speech → first reply audio | 800 / 800 | 900 / 900 | 0.89 |" in table


def test_no_cut_in_at_stock_leaves_the_ratio_undefined() -> None:
    (row,) = rate_rows({"cut_in": [0.0, 1.0]}, {"cut_in": [0.0, 0.0]})
    assert row["ratio"] is None and rate_cell(row["stock"]) == "0 / 2 (0 %)"
    (empty,) = rate_rows({}, {})
    assert empty["ours"] is None and rate_cell(empty["ours"]) == "n/a"
    table = comparison_table({}, {}, (), RATE_MEASURES)
    assert "| false cut-ins (turns) | n/a | n/a | n/a | 0, 0 |" in table


def _pausing_turn(pauses: list[float], **turn: Any) -> dict[str, Any]:
    return {"end_of_speech": {"mono": 0.0, "wall": EOS}, "pauses_ms": pauses, **turn}


@pytest.mark.parametrize(
    ("turn", "outcomes"),
    [
        (_pausing_turn([648.7, 903.2]), [(650, False), (900, False)]),
        (
            _pausing_turn([500, 900], false_cut_in=True, cut_in_during="pause 2"),
            [(500, False), (900, True)],
        ),
        (  # an onset over fragment 2 counts against the pause before it; later ones not reached
            _pausing_turn([500, 900], false_cut_in=True, cut_in_during="fragment 2"),
            [(500, True)],
        ),
        (_pausing_turn([500, 900], agent_was_speaking=True), []),
        (_pausing_turn([500], end_of_speech=None), []),
        ({"end_of_speech": {"mono": 0.0, "wall": EOS}}, []),  # a plain turn
    ],
)
def test_each_pause_up_to_the_cut_in_is_an_outcome(
    turn: dict[str, Any], outcomes: list[tuple[int, bool]]
) -> None:
    assert pause_outcomes(turn) == outcomes


def test_the_cut_ins_by_pause_table() -> None:
    cut = _pausing_turn([650], false_cut_in=True, cut_in_during="pause 1", first_reply_audio=None)
    ours = call_measures({"dispatched": 0.0, "report": {"turns": [cut, _pausing_turn([450])]}})
    stock = call_measures({"dispatched": 0.0, "report": {"turns": [_pausing_turn([650])]}})
    assert ours["pause_cut:650"] == [1.0] and ours["pause_cut:450"] == [0.0]
    rows = pause_rows(ours, stock)
    assert [r["pause_ms"] for r in rows] == [450, 650]
    assert rows[0]["stock"] is None and rows[1]["stock"] == Rate(0, 1, 0.0)
    table = pause_table(ours, stock)
    assert "| 450 | 0 / 1 (0 %) | n/a |" in table
    assert "| 650 | 1 / 1 (100 %) | 0 / 1 (0 %) |" in table
    assert pause_table({"reply": [1.0]}, {}) == ""
