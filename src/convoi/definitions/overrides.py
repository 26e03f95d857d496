"""Override merge: agent definition + ``agent_overrides`` → the effective agent (docs/architecture.md §4).

It lives with the definitions because both sides need it: a squad file's member ``overrides`` are
validated by merging them when the definitions are loaded (:mod:`convoi.definitions.loader`), and
a call's ``agent_overrides`` are merged when the call is resolved (:mod:`convoi.callspec`). It
imports only the definition models and :mod:`convoi.validation`.

Rules, each with its own test in ``tests/test_overrides.py``:

1. Scalars (``first_message``, ``system_prompt``) replace the definition's value.
2. ``llm`` / ``tts`` / ``stt`` merge key by key when the provider is unchanged (or not given).
3. A different ``provider`` replaces the whole block; the replacement is noted (and logged).
4. ``knowledge_base_ids`` replaces the list (it is not appended to); so does each kind of
   ``fallbacks`` (``fallbacks.llm`` replaces the LLM fallbacks, STT and TTS ones stay).
5. Keys that are absent or ``null`` in the overrides leave the definition untouched, at the top
   level and inside ``llm`` / ``tts`` / ``stt``.
6. The result is validated again as an :class:`~convoi.definitions.models.Agent`; a problem is
   reported under the override's own field path (``agent_overrides.llm.temperature``).

For squads, member overrides apply first and the call's overrides second, to every member.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convoi.definitions.ids import KnowledgeBaseId
from convoi.definitions.models import MAX_FIRST_MESSAGE, MAX_SYSTEM_PROMPT, Agent
from convoi.validation import Issue, issues_from

__all__ = ["OVERRIDE_KEYS", "AgentOverrides", "MergeResult", "OverrideError", "merge"]

logger = logging.getLogger("convoi.overrides")  # named for the concern (log filters use it)

OVERRIDE_KEYS = (
    "first_message",
    "system_prompt",
    "llm",
    "tts",
    "stt",
    "knowledge_base_ids",
    "limits",
    "fallbacks",
)
_BLOCKS = ("llm", "tts", "stt")


class AgentOverrides(BaseModel):
    """Per-call (or per-member) overrides. Unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_message: str | None = Field(None, max_length=MAX_FIRST_MESSAGE)
    system_prompt: str | None = Field(None, max_length=MAX_SYSTEM_PROMPT)
    llm: dict[str, Any] | None = None
    tts: dict[str, Any] | None = None
    stt: dict[str, Any] | None = None
    knowledge_base_ids: list[KnowledgeBaseId] | None = Field(None, max_length=50)
    limits: dict[str, Any] | None = None
    """Convoi extension: call limits (``max_duration_seconds``, ``silence_timeout_seconds``, the
    silence prompt and goodbye, the wrap-up message and when it is said), merged key by key."""
    fallbacks: dict[str, Any] | None = None
    """Convoi extension: ``{llm: [...], stt: [...], tts: [...]}``; each kind given replaces that
    kind's fallback list (``[]`` removes them), the other kinds stay as defined."""


class OverrideError(ValueError):
    """The merged agent is invalid; ``issues`` name the override fields at fault."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(str(i) for i in issues))
        self.issues = issues


@dataclass(frozen=True)
class MergeResult:
    """The effective agent and human-readable notes on what the merge did."""

    agent: Agent
    notes: list[str] = field(default_factory=list)


def merge(
    agent: Agent,
    overrides: AgentOverrides | Mapping[str, Any] | None,
    *,
    field_prefix: str = "agent_overrides",
) -> MergeResult:
    """Apply ``overrides`` to ``agent`` and validate the result.

    Raises :class:`OverrideError` (with issues under ``field_prefix``) when the overrides are not
    well-formed or the merged agent is invalid.
    """
    if overrides is None:
        return MergeResult(agent)
    if not isinstance(overrides, AgentOverrides):
        try:
            overrides = AgentOverrides.model_validate(overrides)
        except ValidationError as exc:
            raise OverrideError(issues_from(exc, AgentOverrides, field_prefix)) from exc

    data = agent.model_dump()
    notes: list[str] = []
    for key, value in overrides.model_dump(exclude_none=True).items():
        if key in _BLOCKS:
            value = {k: v for k, v in value.items() if v is not None}  # null = leave as defined
            current = data[key]
            new_provider = value.get("provider", current["provider"])
            if new_provider != current["provider"]:
                notes.append(
                    f"{key}: provider {current['provider']} → {new_provider}; "
                    "the whole block was replaced"
                )
                logger.info("override replaced %s block", key, extra={"notes": notes[-1]})
                data[key] = value
            else:
                data[key] = {**current, **value}
        elif key in ("limits", "fallbacks"):
            data[key] = {**data[key], **{k: v for k, v in value.items() if v is not None}}
        else:
            data[key] = value
    try:
        merged = Agent.model_validate(data)
    except ValidationError as exc:
        raise OverrideError(issues_from(exc, Agent, field_prefix)) from exc
    return MergeResult(merged, notes)
