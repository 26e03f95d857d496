"""The benchmark's caller sets: what the scripted callers say, and the emulators' script for it.

* ``plain``: the demo's lines, each said at once (the benchmark as it always ran).
* ``pausing``: :data:`PAUSING_UTTERANCES`, a fixed list of utterances said in fragments with
  pauses of 450 to 900 ms between them (every 50 ms step once), so runs are comparable. Call ``i``
  of each worker says the same utterances (the list is walked across calls, ``turns`` per call).

The Deepgram emulator answers every utterance its energy detector finds with the next scripted
``caller`` line, and ends an utterance after ``stt.silence_ms`` (400 ms) of silence: a fragment
followed by a pause that long gets a final transcript of its own, so the scenario's lines are the
fragments (:func:`stt_lines`). A pause within :data:`STT_MARGIN_MS` of the endpointing silence
would split or not depending on how the audio's windows fall (and on WebRTC's jitter buffer), which
is why the list keeps its pauses at 450 ms and above. Each utterance's last fragment carries a
keyword the LLM rules answer; a fragment alone (an end of turn decided in a pause) gets the
default reply. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from convoi.devstack.caller.pauses import PausingUtterance, Utterance

__all__ = [
    "CALLER_SETS",
    "PAUSING_REPLIES",
    "PAUSING_UTTERANCES",
    "STT_MARGIN_MS",
    "parse_sets",
    "pausing_scenario",
    "stt_lines",
    "utterances_for",
]

CALLER_SETS: Final = ("plain", "pausing")
STT_MARGIN_MS: Final = 40
"""A pause this close to the STT's endpointing silence is ambiguous (see the module docstring)."""

PAUSING_UTTERANCES: Final[tuple[PausingUtterance, ...]] = (
    PausingUtterance(("I would like to check", "the status of my order"), (650,)),
    PausingUtterance(("Can you tell me", "when my next bill is due"), (800,)),
    PausingUtterance(
        ("I moved last month", "and need to change", "my delivery address"), (500, 900)
    ),
    PausingUtterance(("My internet keeps", "dropping out in the evening"), (700,)),
    PausingUtterance(("I think I was charged", "twice for the same month"), (450,)),
    PausingUtterance(("Could you please", "cancel my premium plan"), (850,)),
    PausingUtterance(("I would rather", "pay by card", "than by bank transfer"), (550, 750)),
    PausingUtterance(("Is there someone", "who can call me back tomorrow"), (600,)),
)
PAUSING_REPLIES: Final[tuple[tuple[str, str], ...]] = (
    ("status of my order", "Your order shipped yesterday and arrives on Friday."),
    ("next bill", "Your next bill is due on the first of the month."),
    ("delivery address", "I can update that. What is the new address?"),
    ("dropping out", "Sorry about that. I will run a line test now."),
    ("twice for the same", "Let me look at those two charges for you."),
    ("premium plan", "Okay, your premium plan ends today."),
    ("bank transfer", "Card payments are set up for you now."),
    ("call me back", "Yes, someone will call you tomorrow morning."),
)
"""(keyword of an utterance's last fragment, the agent's answer), one per pausing utterance."""


def parse_sets(text: str) -> tuple[str, ...]:
    """``"plain,pausing"`` → ``("plain", "pausing")``; unknown or no names raise ValueError."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in CALLER_SETS]
    if unknown or not names:
        raise ValueError(f"caller sets are {', '.join(CALLER_SETS)} (got {text!r})")
    return names


def utterances_for(
    caller_set: str, call_index: int, turns: int, plain: Sequence[str]
) -> list[Utterance]:
    """What call ``call_index`` (0-based) says in ``turns`` turns. ``plain``: the demo's lines
    from the first, every call alike; ``pausing``: the fixed list, walked across calls."""
    if caller_set == "plain":
        return [plain[i % len(plain)] for i in range(turns)]
    if caller_set == "pausing":
        n = len(PAUSING_UTTERANCES)
        return [PAUSING_UTTERANCES[(call_index * turns + k) % n] for k in range(turns)]
    raise ValueError(f"unknown caller set {caller_set!r}")


def stt_lines(utterances: Sequence[Utterance], silence_ms: int) -> list[str]:
    """The STT emulator's ``caller`` lines for ``utterances``: one per stretch of speech its
    endpointing (``silence_ms``) ends; fragments across a shorter pause make one line. A pause
    within :data:`STT_MARGIN_MS` of ``silence_ms`` raises ValueError."""
    lines: list[str] = []
    for utterance in utterances:
        if isinstance(utterance, str):
            lines.append(utterance)
            continue
        current = utterance.fragments[0]
        for pause, fragment in zip(utterance.pauses_ms, utterance.fragments[1:], strict=True):
            if abs(pause - silence_ms) < STT_MARGIN_MS:
                raise ValueError(f"a {pause} ms pause is too close to the STT's {silence_ms} ms")
            if pause > silence_ms:
                lines.append(current)
                current = fragment
            else:
                current = f"{current} {fragment}"
        lines.append(current)
    return lines


def pausing_scenario(
    utterances: Sequence[Utterance], latency: Mapping[str, int], silence_ms: int = 400
) -> dict[str, Any]:
    """The emulators' scenario for a pausing call: the fragments as STT lines, one LLM rule per
    utterance (on its last fragment's keyword), ``"Okay."`` for anything else."""
    return {
        "caller": stt_lines(utterances, silence_ms),
        "caller_repeat": True,
        "llm": [{"when": {"last_user_contains": k}, "say": say} for k, say in PAUSING_REPLIES],
        "default_reply": "Okay.",
        "latency": dict(latency),
        "stt": {"silence_ms": silence_ms},
    }
