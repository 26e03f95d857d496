"""Choosing the scripted LLM answer for an OpenAI-format conversation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .amd_answer import AMD_TOOL, classify_greeting
from .common import word_count
from .scenario import LlmRule, Scenario, ToolCallSpec, When

__all__ = ["Answer", "choose_answer", "message_text", "prompt_tokens"]


@dataclass(frozen=True)
class Answer:
    """What the emulated model replies: text and/or one tool call."""

    text: str
    tool_call: ToolCallSpec | None
    rule_index: int | None
    """Index of the matching rule in ``scenario.llm`` (None: ``default_reply``)."""

    @property
    def arguments_json(self) -> str:
        """The tool call's arguments as the JSON string OpenAI sends."""
        return json.dumps(self.tool_call.arguments) if self.tool_call else ""

    @property
    def completion_tokens(self) -> int:
        """Words of the text, plus 1 + words of the arguments JSON for a tool call."""
        n = word_count(self.text)
        if self.tool_call:
            n += 1 + word_count(self.arguments_json)
        return n


def message_text(message: dict[str, Any]) -> str:
    """Plain text of an OpenAI message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Whitespace-split word count of every message's content."""
    return sum(word_count(message_text(m)) for m in messages)


def _user_indices(messages: list[dict[str, Any]]) -> list[int]:
    return [i for i, m in enumerate(messages) if m.get("role") == "user"]


def _tool_results_after_last_user(messages: list[dict[str, Any]]) -> set[str]:
    """Names of the tools whose results appear after the last user message."""
    users = _user_indices(messages)
    start = users[-1] + 1 if users else 0
    names_by_id: dict[str, str] = {}
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            if call.get("id") and fn.get("name"):
                names_by_id[call["id"]] = fn["name"]
    return {
        names_by_id.get(m.get("tool_call_id", ""), "")
        for m in messages[start:]
        if m.get("role") == "tool"
    } - {""}


def _turn_contains(messages: list[dict[str, Any]], needles: str | list[str]) -> bool:
    """Whether every needle is in a message this turn added (after the assistant's last reply
    that precedes the last user message)."""
    users = _user_indices(messages)
    if not users:
        return False
    start = 0
    for i in range(users[-1], -1, -1):
        if messages[i].get("role") == "assistant":
            start = i + 1
            break
    text = " ".join(message_text(m).lower() for m in messages[start:])
    wanted = [needles] if isinstance(needles, str) else needles
    return all(n.lower() in text for n in wanted)


def _matches(when: When, messages: list[dict[str, Any]]) -> bool:
    users = _user_indices(messages)
    last_user = message_text(messages[users[-1]]).lower() if users else None
    if when.always is not None and not when.always:
        return False
    if when.greeting is not None and when.greeting != (not users):
        return False
    if when.turn is not None and when.turn != len(users):
        return False
    if when.last_user_contains is not None:
        needles = (
            [when.last_user_contains]
            if isinstance(when.last_user_contains, str)
            else when.last_user_contains
        )
        if last_user is None or not any(n.lower() in last_user for n in needles):
            return False
    if when.system_contains is not None:
        needle = when.system_contains.lower()
        systems = [
            message_text(m).lower() for m in messages if m.get("role") in ("system", "developer")
        ]
        if not any(needle in s for s in systems):
            return False
    if when.context_contains is not None and not _turn_contains(messages, when.context_contains):
        return False
    return not (
        when.has_tool_result is not None
        and when.has_tool_result not in _tool_results_after_last_user(messages)
    )


def choose_answer(
    scenario: Scenario,
    messages: list[dict[str, Any]],
    rule_uses: dict[int, int],
    *,
    tools: list[str] | None = None,
    tool_choice: object = None,
) -> Answer:
    """First matching rule's answer, else ``default_reply``; counts the use in ``rule_uses``.

    A tool-call rule is skipped once a result for that tool follows the last user message, so
    the model does not call the same tool forever. With ``tool_choice`` ``"required"`` the model
    must call one of ``tools`` (the names offered): only rules calling an offered tool match, and
    an answering-machine-detection request no rule answers gets :func:`classify_greeting`'s label.
    """
    required = tool_choice == "required"
    offered = set(tools or ())
    done_tools = _tool_results_after_last_user(messages)
    for i, rule in enumerate(scenario.llm):
        if rule.max_uses is not None and rule_uses.get(i, 0) >= rule.max_uses:
            continue
        if rule.tool_call is not None and rule.tool_call.name in done_tools:
            continue
        if required and (rule.tool_call is None or rule.tool_call.name not in offered):
            continue
        if _matches(rule.when, messages):
            rule_uses[i] = rule_uses.get(i, 0) + 1
            return _answer(rule, i)
    if required and AMD_TOOL in offered:
        users = _user_indices(messages)
        transcript = message_text(messages[users[-1]]) if users else ""
        label = classify_greeting(transcript)
        return Answer(
            text="",
            tool_call=ToolCallSpec(name=AMD_TOOL, arguments={"label": label}),
            rule_index=None,
        )
    return Answer(text=scenario.default_reply, tool_call=None, rule_index=None)


def _answer(rule: LlmRule, index: int) -> Answer:
    return Answer(text=rule.say or "", tool_call=rule.tool_call, rule_index=index)
