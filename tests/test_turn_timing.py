"""The benchmark's per-turn record (convoi.worker.turn_timing): off unless asked for."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import MetricsCollectedEvent
from livekit.agents.metrics import EOUMetrics, LLMMetrics

from convoi.worker import turn_timing


class _Session:
    def __init__(self) -> None:
        self.handlers: dict[str, list[Callable[[Any], None]]] = {}

    def on(self, event: str, handler: Callable[[Any], None]) -> None:
        self.handlers.setdefault(event, []).append(handler)

    def emit(self, event: str, payload: Any) -> None:
        for handler in self.handlers.get(event, []):
            handler(payload)


def _eou(at: float) -> MetricsCollectedEvent:
    metrics = EOUMetrics(
        timestamp=at,
        end_of_utterance_delay=0.5,
        transcription_delay=0.4,
        on_user_turn_completed_delay=0.01,
    )
    return MetricsCollectedEvent(metrics=metrics)


def test_without_the_variable_nothing_is_attached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(turn_timing.EVENTS_ENV, raising=False)
    session = _Session()
    turn_timing.attach(session)  # type: ignore[arg-type]
    assert session.handlers == {}


def test_end_of_turn_metrics_are_appended(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(turn_timing.EVENTS_ENV, str(path))
    session = _Session()
    turn_timing.attach(session)  # type: ignore[arg-type]
    session.emit("metrics_collected", _eou(1000.5))
    llm = LLMMetrics(
        label="x",
        request_id="r",
        timestamp=1.0,
        duration=0.1,
        ttft=0.05,
        cancelled=False,
        completion_tokens=1,
        prompt_tokens=1,
        prompt_cached_tokens=0,
        total_tokens=2,
        tokens_per_second=10.0,
    )
    session.emit("metrics_collected", MetricsCollectedEvent(metrics=llm))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["session", "eou"]
    assert lines[1]["at"] == 1000.5 and lines[1]["on_user_turn_completed_delay"] == 0.01
    assert lines[0]["room"] is None  # no job here
