"""Per-turn timing for the benchmark: the end-of-turn decisions of a session, to a JSONL file.

Off unless ``CONVOI_BENCH_EVENTS`` names a file (the benchmark sets it; production never does).
Then :func:`attach` appends one ``session`` line when the session is set up (the job process's
pid, so the benchmark can measure that process) and one ``eou`` line per livekit-agents
``EOUMetrics`` (the moment the end of the user's turn was decided, and its delays)::

    {"room": "...", "event": "eou", "at": 1764650000.12, "pid": 4242,
     "end_of_utterance_delay": 0.51, "transcription_delay": 0.49, "on_user_turn_completed_delay": 0.0}

and :func:`mark` appends one line per phase of a call's start that the worker reaches
(``connected``, ``participant``, ``session_start``, ``session_started``, ``track_subscribed``,
``greeting_first_frame``), so the benchmark can place them on the callers' clock.

The stock agent of :mod:`convoi.devstack.bench` calls the same function, so both workers report
through one code path. Lines are tiny and written when the metric is emitted (never on the audio
path: livekit-agents emits metrics from the turn task).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Final

from livekit.agents import AgentSession, MetricsCollectedEvent, get_job_context
from livekit.agents.metrics import EOUMetrics

__all__ = ["EVENTS_ENV", "attach", "mark"]

EVENTS_ENV: Final = "CONVOI_BENCH_EVENTS"


def _room_name() -> str | None:
    try:
        return get_job_context().room.name
    except RuntimeError:  # no job (unit tests, console)
        return None


def _append(path: Path, line: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def attach(session: AgentSession[Any]) -> None:
    """Record the session's end-of-turn decisions when ``CONVOI_BENCH_EVENTS`` is set."""
    target = os.environ.get(EVENTS_ENV)
    if not target:
        return
    path, room, pid = Path(target), _room_name(), os.getpid()
    _append(path, {"room": room, "event": "session", "at": time.time(), "pid": pid})

    def on_metrics(ev: MetricsCollectedEvent) -> None:
        m = ev.metrics
        if isinstance(m, EOUMetrics):
            _append(
                path,
                {
                    "room": room,
                    "event": "eou",
                    "at": m.timestamp,
                    "pid": pid,
                    "end_of_utterance_delay": m.end_of_utterance_delay,
                    "transcription_delay": m.transcription_delay,
                    "on_user_turn_completed_delay": m.on_user_turn_completed_delay,
                },
            )

    session.on("metrics_collected", on_metrics)


def mark(event: str) -> None:
    """Record that the call reached ``event`` now (a ``{"event": event, "at": ...}`` line), when
    ``CONVOI_BENCH_EVENTS`` is set: the benchmark places a call's phases on the callers' clock."""
    target = os.environ.get(EVENTS_ENV)
    if target:
        _append(Path(target), {"room": _room_name(), "event": event, "at": time.time()})
