"""The benchmark's arithmetic (pure): a reply decomposed from its timestamps, the tables."""

from __future__ import annotations

from typing import Any

import pytest

from convoi.devstack.bench.measures import (
    REPLY_MEASURES,
    call_measures,
    comparison_rows,
    comparison_table,
    percentile,
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
