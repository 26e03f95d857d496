"""The emulated model's own answer to an answering-machine-detection request.

livekit-agents' AMD (``voice/amd/classifier.py``) asks the LLM to classify the callee's first
words: its prompt as the system message, the transcript as the user message, the tools
``save_prediction(label)`` and ``postpone_termination(seconds)``, and ``tool_choice``
``"required"``. A scenario can script that answer (a rule with ``system_contains`` and a
``tool_call``); when none does, :func:`classify_greeting` answers the way a model would on
plain greetings, so a voicemail call works without scripting the classifier.
"""

from __future__ import annotations

import re

__all__ = ["AMD_TOOL", "classify_greeting"]

AMD_TOOL = "save_prediction"
"""The tool through which AMD receives the model's label."""

_UNAVAILABLE = re.compile(
    r"mailbox (is )?full|not (been )?set up|cannot (take|accept) (any )?(more )?messages"
    r"|unable to (take|accept) messages|no longer in service|not available.*goodbye",
)
_IVR = re.compile(r"\bpress\b|\bdial\b.*\bextension\b|state your name|main menu|for .+, say\b")
_VOICEMAIL = re.compile(
    r"leave (me )?(a|your) (message|name)|after the (tone|beep)|voice ?mail|you('ve| have) reached"
    r"|(can't|cannot|not able to) (come to|answer|take) (the|your) (phone|call)"
    r"|away from (my|the) (desk|phone)|get back to you",
)


def classify_greeting(transcript: str) -> str:
    """The AMD category a model would give ``transcript`` (``human`` when nothing machine-like)."""
    text = " ".join(transcript.lower().split())
    if _UNAVAILABLE.search(text):
        return "machine-unavailable"
    if _IVR.search(text):
        return "machine-ivr"
    if _VOICEMAIL.search(text):
        return "machine-vm"
    return "human"
