"""The benchmark's arithmetic: per-call measures from timestamps, percentiles, the tables.

Pure functions over plain data (the caller's report as a dict, the emulators' request records,
the workers' ``turn_timing`` lines); no I/O. Every time is epoch seconds on this machine's one
clock; every measure is in milliseconds.

A reply is decomposed along the moments of its turn (``E`` the caller's end of speech, ``A`` the
first loud reply frame at the caller); each moment is the first of its kind in ``(E - 0.5 s, A]``,
except the LLM request: the last one whose first token left before ``A`` (the one that spoke; an
earlier preemptive request may have been cancelled):

====================  =============================================================
``stt_final``         the STT emulator sent the final transcript
``eou``               the worker decided the end of the turn (livekit ``EOUMetrics``)
``llm_request``       the LLM emulator received the chat completion request
``llm_first_token``   the LLM emulator sent the first token
``tts_text``          the TTS emulator received the reply's first text
``tts_first_byte``    the TTS emulator sent the first audio
====================  =============================================================

A turn of a pausing caller (:mod:`convoi.devstack.bench.sets`) whose reply started before the real
end of speech is a **false cut-in**: ``cut_in`` holds 1.0 for it and 0.0 for every other spoken
turn (:data:`RATE_MEASURES`: count and rate), and its reply is left out of the latencies, which are
measured from the real end of speech (the end of the last fragment). Per pause length (rounded to
50 ms), ``pause_cut:<ms>`` holds 1.0 for a pause the agent cut into and 0.0 for one it let pass
(:func:`pause_outcomes`; :func:`pause_rows` makes the "cut-ins by pause" table).

Provider parts are what a real provider would take: end of speech → STT final (the emulator's
endpointing plus injected delay), LLM request → first token, TTS text → first byte. The framework
overhead is the rest of the reply: endpointing and turn decision, getting the request out, the
first text to the TTS, and the audio's way to the caller.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "JOIN_MEASURES",
    "MEMORY_MEASURES",
    "RATE_MEASURES",
    "REPLY_MEASURES",
    "Rate",
    "Summary",
    "call_measures",
    "comparison_rows",
    "comparison_table",
    "merge",
    "pause_outcomes",
    "pause_rows",
    "pause_table",
    "percentile",
    "rate",
    "rate_cell",
    "rate_rows",
    "ratio",
    "reply_parts",
    "summarize",
]

Measures = dict[str, list[float]]

JOIN_MEASURES: Final[tuple[tuple[str, str], ...]] = (
    ("join", "dispatch → agent joined"),
    ("greeting", "caller joined → first greeting audio"),
    ("agent_greeting", "agent joined → first greeting audio"),
    ("reply", "end of caller speech → first reply audio"),
)
REPLY_MEASURES: Final[tuple[tuple[str, str], ...]] = (
    ("eos_stt", "  end of speech → STT final sent (provider)"),
    ("eos_eou", "  end of speech → end of turn decided"),
    ("hook", "  on_user_turn_completed hook (after the decision)"),
    ("eou_llm", "  end of turn decided → LLM request received (< 0: preemptive)"),
    ("llm_ttft", "  LLM request → first token (provider)"),
    ("llm_tts", "  LLM first token → TTS first text"),
    ("tts_ttfb", "  TTS first text → first byte (provider)"),
    ("tts_caller", "  TTS first byte → first audio at the caller"),
    ("eou_heard", "  end of turn decided → first audio at the caller"),
    ("overhead", "  framework overhead (reply − provider parts)"),
)
RATE_MEASURES: Final[tuple[tuple[str, str], ...]] = (("cut_in", "false cut-ins (turns)"),)
"""Measures of 0/1 per turn, shown as count / turns (rate)."""
MEMORY_MEASURES: Final[tuple[tuple[str, str], ...]] = (
    ("job_pss", "PSS per job process (MB)"),
    ("job_uss", "USS per job process (MB)"),
    ("idle_pss", "whole idle worker PSS (MB)"),
)
_WINDOW_BEFORE_S: Final = 0.5
_PAUSE_KEY: Final = "pause_cut:"
_PAUSE_STEP_MS: Final = 50


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _wall(stamp: Mapping[str, float] | None) -> float | None:
    return None if stamp is None else float(stamp["wall"])


def _first(times: Iterable[float | None], lo: float, hi: float) -> float | None:
    inside = [t for t in times if t is not None and lo < t <= hi]
    return min(inside) if inside else None


def _moments(
    eos: float, heard: float, records: Sequence[Mapping[str, Any]], eou: Sequence[float]
) -> dict[str, float | None]:
    lo = eos - _WINDOW_BEFORE_S
    finals = [
        t.get("sent_at")
        for r in records
        if r.get("provider") == "stt"
        for t in r.get("transcripts", [])
        if t.get("is_final")
    ]
    llm = [r for r in records if r.get("provider") == "llm" and lo < r.get("time", 0.0) <= heard]
    # the request that spoke: the last one whose first token left before the reply was heard (a
    # preemptive request cancelled before its first token is not it)
    spoke = [r for r in llm if r.get("first_token_time") and r["first_token_time"] <= heard]
    chosen = max(spoke, key=lambda r: r["time"]) if spoke else None
    request = chosen["time"] if chosen else _first((r.get("time") for r in llm), lo, heard)
    first_token = chosen["first_token_time"] if chosen else None
    tts = [r for r in records if r.get("provider") == "tts"]
    tts_text = _first((r.get("first_text_time") for r in tts), request or lo, heard)
    tts_byte = next(
        (
            r.get("first_audio_time")
            for r in tts
            if tts_text and r.get("first_text_time") == tts_text
        ),
        None,
    )
    return {
        "stt_final": _first(finals, lo, heard),
        "eou": _first(eou, lo, heard),
        "llm_request": request,
        "llm_first_token": first_token,
        "tts_text": tts_text,
        "tts_first_byte": tts_byte,
    }


def _between(m: Mapping[str, float | None], a: str, b: str) -> float | None:
    start, end = m.get(a), m.get(b)
    return None if start is None or end is None else (end - start) * 1000


def reply_parts(
    eos: float, heard: float, records: Sequence[Mapping[str, Any]], eou: Sequence[float]
) -> dict[str, float]:
    """The decomposition of one reply (ms; a part whose moments are missing is left out)."""
    m: dict[str, float | None] = {"eos": eos, "heard": heard, **_moments(eos, heard, records, eou)}
    parts = {
        "eos_stt": _between(m, "eos", "stt_final"),
        "eos_eou": _between(m, "eos", "eou"),
        "eou_llm": _between(m, "eou", "llm_request"),
        "llm_ttft": _between(m, "llm_request", "llm_first_token"),
        "llm_tts": _between(m, "llm_first_token", "tts_text"),
        "tts_ttfb": _between(m, "tts_text", "tts_first_byte"),
        "tts_caller": _between(m, "tts_first_byte", "heard"),
        "eou_heard": _between(m, "eou", "heard"),
    }
    provider = [parts["eos_stt"], parts["llm_ttft"], parts["tts_ttfb"]]
    if all(p is not None for p in provider):
        parts["overhead"] = (heard - eos) * 1000 - sum(p for p in provider if p is not None)
    return {k: v for k, v in parts.items() if v is not None}


def pause_outcomes(turn: Mapping[str, Any]) -> list[tuple[int, bool]]:
    """Per pause of a pausing turn (a caller report's turn dict), up to the one the agent cut into:
    ``(length rounded to 50 ms, cut into)``. An onset over fragment N counts against the pause
    before it; a turn the agent talked over from its start says nothing about its pauses."""
    if turn.get("agent_was_speaking") or turn.get("end_of_speech") is None:
        return []
    pauses = [
        round(float(p) / _PAUSE_STEP_MS) * _PAUSE_STEP_MS for p in turn.get("pauses_ms") or []
    ]
    during = turn.get("cut_in_during")
    if not turn.get("false_cut_in") or not during:
        return [(p, False) for p in pauses]
    kind, n = str(during).split()
    cut = int(n) if kind == "pause" else int(n) - 1
    return [(p, i == cut) for i, p in enumerate(pauses[:cut], start=1)]


def call_measures(
    result: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]] = (),
    eou: Sequence[float] = (),
) -> Measures:
    """Measures of one call: a result of :mod:`convoi.devstack.bench.callers` (``dispatched``,
    ``report``), the emulators' records of the call and the worker's end-of-turn times."""
    report = result["report"]
    out: Measures = {}
    joined = _wall(report.get("agent_joined"))
    if joined is not None:
        out["join"] = [(joined - float(result["dispatched"])) * 1000]
    heard = _wall(report.get("first_agent_audio"))
    if joined is not None and heard is not None:  # the agent's join as the caller saw it
        out["agent_greeting"] = [(heard - joined) * 1000]
    greeting = report.get("latencies_ms", {}).get("greeting")
    if greeting is not None:
        out["greeting"] = [float(greeting)]
    for turn in report.get("turns", []):
        eos, heard = _wall(turn.get("end_of_speech")), _wall(turn.get("first_reply_audio"))
        cut_in = bool(turn.get("false_cut_in"))
        if eos is not None:  # spoken to its end: a turn that could be cut into
            out.setdefault("cut_in", []).append(1.0 if cut_in else 0.0)
        for pause, cut in pause_outcomes(turn):
            out.setdefault(f"{_PAUSE_KEY}{pause}", []).append(1.0 if cut else 0.0)
        if eos is None or heard is None or cut_in:
            continue
        if turn.get("agent_was_speaking"):  # the agent talked over the end of speech: no reply
            out.setdefault("overlaps", []).append(1.0)
            continue
        out.setdefault("reply", []).append((heard - eos) * 1000)
        for key, value in reply_parts(eos, heard, records, eou).items():
            out.setdefault(key, []).append(value)
    return out


def merge(into: Measures, more: Mapping[str, Sequence[float]]) -> Measures:
    """Append ``more``'s values to ``into`` (returned)."""
    for key, values in more.items():
        into.setdefault(key, []).extend(values)
    return into


@dataclass(frozen=True)
class Summary:
    """p50 / p95 of one measure (``n`` values)."""

    p50: float
    p95: float
    n: int


def summarize(values: Sequence[float]) -> Summary | None:
    """p50 (median) and p95 of ``values``; None when empty."""
    if not values:
        return None
    return Summary(statistics.median(values), percentile(values, 0.95), len(values))


def ratio(ours: Summary | None, stock: Summary | None) -> float | None:
    """ours p50 / stock p50 (None when either is missing or stock's is not positive)."""
    if ours is None or stock is None or stock.p50 <= 0 or not math.isfinite(stock.p50):
        return None
    return ours.p50 / stock.p50


@dataclass(frozen=True)
class Rate:
    """``count`` of ``n`` turns, and ``rate`` = count / n."""

    count: int
    n: int
    rate: float


def rate(values: Sequence[float]) -> Rate | None:
    """The count of 1.0s among ``values`` (0/1 per turn) and their rate; None when empty."""
    if not values:
        return None
    count = sum(1 for v in values if v)
    return Rate(count, len(values), count / len(values))


def rate_cell(r: Rate | None) -> str:
    """``"3 / 16 (19 %)"`` (n/a when None)."""
    return "n/a" if r is None else f"{r.count} / {r.n} ({100 * r.rate:.0f} %)"


def rate_rows(
    ours: Mapping[str, Sequence[float]],
    stock: Mapping[str, Sequence[float]],
    rows: Sequence[tuple[str, str]] = RATE_MEASURES,
) -> list[dict[str, Any]]:
    """Per rate measure: ``key``, ``label``, ``ours`` and ``stock`` (:class:`Rate` or None) and
    ``ratio`` (ours rate / stock rate, None when either is missing or stock's is 0)."""
    out = []
    for key, label in rows:
        a, b = rate(ours.get(key, [])), rate(stock.get(key, []))
        r = a.rate / b.rate if a is not None and b is not None and b.rate > 0 else None
        out.append({"key": key, "label": label, "ours": a, "stock": b, "ratio": r})
    return out


def pause_rows(
    ours: Mapping[str, Sequence[float]], stock: Mapping[str, Sequence[float]]
) -> list[dict[str, Any]]:
    """Per pause length either side met: ``pause_ms``, ``ours`` and ``stock`` (:class:`Rate` of
    the pauses cut into, or None), shortest first."""
    lengths = sorted(
        {int(k[len(_PAUSE_KEY) :]) for k in (*ours, *stock) if k.startswith(_PAUSE_KEY)}
    )
    return [
        {
            "pause_ms": ms,
            "ours": rate(ours.get(f"{_PAUSE_KEY}{ms}", [])),
            "stock": rate(stock.get(f"{_PAUSE_KEY}{ms}", [])),
        }
        for ms in lengths
    ]


def pause_table(ours: Mapping[str, Sequence[float]], stock: Mapping[str, Sequence[float]]) -> str:
    """A Markdown table of :func:`pause_rows` (empty string when no pause was met)."""
    rows = pause_rows(ours, stock)
    if not rows:
        return ""
    lines = ["| pause (ms) | ours: cut into | stock: cut into |", "| --- | --- | --- |"]
    lines += [
        f"| {r['pause_ms']} | {rate_cell(r['ours'])} | {rate_cell(r['stock'])} |" for r in rows
    ]
    return "\n".join(lines)


def _cell(s: Summary | None) -> str:
    return "n/a" if s is None else f"{s.p50:.0f} / {s.p95:.0f}"


def comparison_rows(
    ours: Mapping[str, Sequence[float]],
    stock: Mapping[str, Sequence[float]],
    rows: Sequence[tuple[str, str]],
) -> list[dict[str, Any]]:
    """Per measure: ``key``, ``label``, ``ours`` and ``stock`` (:class:`Summary` or None) and
    ``ratio`` (ours p50 / stock p50, None when undefined)."""
    out = []
    for key, label in rows:
        a, b = summarize(ours.get(key, [])), summarize(stock.get(key, []))
        out.append({"key": key, "label": label, "ours": a, "stock": b, "ratio": ratio(a, b)})
    return out


def comparison_table(
    ours: Mapping[str, Sequence[float]],
    stock: Mapping[str, Sequence[float]],
    rows: Sequence[tuple[str, str]],
    rates: Sequence[tuple[str, str]] = (),
) -> str:
    """A Markdown table: measure, ours p50 / p95, stock p50 / p95, ours / stock (of the p50s), n.
    The ratio is n/a where the stock p50 is not positive (e.g. a preemptive request's lead).
    ``rates`` (e.g. :data:`RATE_MEASURES`) add rows of count / turns (rate) and the rates' ratio."""
    lines = [
        "| measure | ours p50 / p95 | stock p50 / p95 | ours / stock | n (ours, stock) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in comparison_rows(ours, stock, rows):
        label, a, b, r = row["label"], row["ours"], row["stock"], row["ratio"]
        shown = "n/a" if r is None else f"{r:.2f}"
        lines.append(
            f"| {label} | {_cell(a)} | {_cell(b)} | {shown} | {a.n if a else 0}, {b.n if b else 0} |"
        )
    for row in rate_rows(ours, stock, rates):
        a, b, r = row["ours"], row["stock"], row["ratio"]
        shown = "n/a" if r is None else f"{r:.2f}"
        lines.append(
            f"| {row['label']} | {rate_cell(a)} | {rate_cell(b)} | {shown} | {a.n if a else 0}, {b.n if b else 0} |"
        )
    return "\n".join(lines)
