"""Utterances said in fragments with pauses between them, and what a pause invites: a false cut-in.

A :class:`PausingUtterance` is said fragment by fragment ("I would like to check" … 650 ms … "the
status of my order"): every fragment is real espeak-ng speech, the pauses are silence, and the
whole is paced in real time like any utterance. Pure logic, no I/O: the plan of the audio
(:func:`pause_plan`) and the verdict on a turn (:func:`classify_turn`).

**False cut-in**: the agent's reply audio starts (a speech onset heard by the caller) after the
first fragment ended and before the real end of speech (the end of the last fragment), i.e. during
a pause or over a later fragment. Agent speech that starts before the first fragment ends cannot be
an end of turn decided on one of this utterance's pauses (there was none yet): such a turn is an
*overlap* (the agent talked over the caller for another reason, e.g. a late reply to the previous
turn), left out of the latencies like a plain turn the agent talked over, and not a cut-in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "PausePlan",
    "PausingUtterance",
    "TurnVerdict",
    "Utterance",
    "classify_turn",
    "pause_plan",
    "utterance_from_json",
    "utterance_text",
    "utterance_to_json",
]


@dataclass(frozen=True)
class PausingUtterance:
    """One utterance said in ``fragments`` with ``pauses_ms[i]`` of silence after fragment ``i``."""

    fragments: tuple[str, ...]
    pauses_ms: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.fragments) < 2:
            raise ValueError("a pausing utterance has at least two fragments")
        if len(self.pauses_ms) != len(self.fragments) - 1:
            raise ValueError("a pausing utterance has one pause between each two fragments")
        if any(not f.strip() for f in self.fragments):
            raise ValueError("a fragment is not empty")
        if any(p <= 0 for p in self.pauses_ms):
            raise ValueError("a pause is longer than 0 ms")

    @property
    def text(self) -> str:
        """The fragments joined by spaces: what was said, as one line."""
        return " ".join(self.fragments)


Utterance = str | PausingUtterance
"""What a caller says in one turn: a plain line (said at once) or a pausing utterance."""


def utterance_text(utterance: Utterance) -> str:
    """The words of ``utterance`` as one line."""
    return utterance if isinstance(utterance, str) else utterance.text


def utterance_to_json(utterance: Utterance) -> str | dict[str, Any]:
    """A plain line stays a string; a pausing utterance is ``{"fragments", "pauses_ms"}``."""
    if isinstance(utterance, str):
        return utterance
    return {"fragments": list(utterance.fragments), "pauses_ms": list(utterance.pauses_ms)}


def utterance_from_json(data: str | Mapping[str, Any]) -> Utterance:
    """The inverse of :func:`utterance_to_json`."""
    if isinstance(data, str):
        return data
    return PausingUtterance(
        tuple(str(f) for f in data["fragments"]), tuple(int(p) for p in data["pauses_ms"])
    )


@dataclass(frozen=True)
class PausePlan:
    """Where each fragment lies in the utterance's audio (sample offsets, end exclusive)."""

    spans: tuple[tuple[int, int], ...]
    total: int

    @property
    def marks(self) -> tuple[int, ...]:
        """Every fragment's start and end offset, in order (start 0, end 0, start 1, …)."""
        return tuple(x for span in self.spans for x in span)


def pause_plan(fragment_samples: Sequence[int], pauses_ms: Sequence[int], rate: int) -> PausePlan:
    """Lay fragments of ``fragment_samples`` samples end to end with ``pauses_ms`` of silence
    between them, at ``rate`` Hz."""
    if len(pauses_ms) != len(fragment_samples) - 1:
        raise ValueError("one pause between each two fragments")
    spans: list[tuple[int, int]] = []
    at = 0
    for i, n in enumerate(fragment_samples):
        spans.append((at, at + n))
        at += n
        if i < len(pauses_ms):
            at += rate * pauses_ms[i] // 1000
    return PausePlan(tuple(spans), at)


@dataclass(frozen=True)
class TurnVerdict:
    """What the agent did while a (pausing) utterance was being said."""

    kind: Literal["clean", "cut_in", "overlap"]
    """``clean``: no agent speech started before the real end of speech; ``cut_in``: it started
    during a pause or over a later fragment; ``overlap``: the agent was speaking when the turn
    began or started before the first fragment ended."""
    at: float | None = None
    """The onset that decided ``cut_in`` / ``overlap`` (None: speaking already at the start)."""
    during: str | None = None
    """Where a cut-in's onset fell: ``"pause N"`` or ``"fragment N"`` (1-based)."""


def _where(onset: float, spans: Sequence[tuple[float, float]]) -> str:
    for i, (start, end) in enumerate(spans):
        if onset < start:
            return f"pause {i}"
        if onset < end:
            return f"fragment {i + 1}"
    return f"pause {len(spans)}"  # not reached for onsets before the real end


def classify_turn(
    spans: Sequence[tuple[float, float]],
    onsets: Iterable[float],
    *,
    speaking_at_start: bool = False,
) -> TurnVerdict:
    """The verdict on one turn from the fragments' ``(start, end)`` times and the agent's speech
    onsets heard by the caller (same clock). See the module docstring for the rules; an onset at
    or after the real end of speech is a reply, not a cut-in."""
    if speaking_at_start:
        return TurnVerdict("overlap")
    first_end, real_end = spans[0][1], spans[-1][1]
    inside = sorted(t for t in onsets if spans[0][0] <= t < real_end)
    if not inside:
        return TurnVerdict("clean")
    if inside[0] < first_end:
        return TurnVerdict("overlap", inside[0])
    return TurnVerdict("cut_in", inside[0], _where(inside[0], spans))
