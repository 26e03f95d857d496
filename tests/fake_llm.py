"""A scripted fake LLM for text-mode AgentSession tests (livekit-agents ships none).

It answers each request with the first rule whose trigger matches the conversation so far and
records every request (the instructions, the messages and the options it was built with), so tests
can assert what the model was asked and with which settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livekit.agents import APIConnectOptions, APIStatusError, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

__all__ = ["Reply", "ScriptedLLM"]


@dataclass
class Reply:
    """Say ``text`` (or call ``tool`` with ``arguments``) when the last user message contains
    ``when`` (``None`` matches anything)."""

    text: str = ""
    when: str | None = None
    tool: str | None = None
    arguments: str = "{}"
    error: str | None = None
    """Fail the request with this message (a non-retryable provider error) instead."""


@dataclass
class Request:
    """One recorded chat request."""

    messages: list[dict[str, Any]]
    tools: list[str]
    model: str
    temperature: float | None


@dataclass
class _Script:
    replies: list[Reply]
    requests: list[Request] = field(default_factory=list)


class ScriptedLLM(llm.LLM):
    """Answers from a script; ``model`` and ``temperature`` are what it was built with."""

    def __init__(
        self, replies: list[Reply], *, model: str = "fake", temperature: float | None = None
    ) -> None:
        super().__init__()
        self._script = _Script(list(replies))
        self._model = model
        self.temperature = temperature

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return "scripted"

    @property
    def requests(self) -> list[Request]:
        return self._script.requests

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        messages = [
            {"role": m.role, "content": m.text_content or ""}
            for m in chat_ctx.items
            if isinstance(m, llm.ChatMessage)
        ]
        names = [getattr(t, "id", None) or getattr(t, "name", "") for t in tools or []]
        self._script.requests.append(Request(messages, names, self._model, self.temperature))
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        answered = {
            item.name for item in chat_ctx.items if isinstance(item, llm.FunctionCallOutput)
        }
        reply = next(
            (
                r
                for r in self._script.replies
                if (r.when is None or r.when.lower() in last_user.lower())
                and not (r.tool and r.tool in answered)
            ),
            Reply(text="Okay."),
        )
        return _Stream(self, reply, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _Stream(llm.LLMStream):
    def __init__(self, owner: ScriptedLLM, reply: Reply, **kwargs: Any) -> None:
        super().__init__(owner, **kwargs)
        self._reply = reply

    async def _run(self) -> None:
        if self._reply.error is not None:
            raise APIStatusError(self._reply.error, status_code=500, retryable=False)
        if self._reply.tool:
            call = llm.FunctionToolCall(
                name=self._reply.tool, arguments=self._reply.arguments, call_id="call_1"
            )
            self._event_ch.send_nowait(
                llm.ChatChunk(id="1", delta=llm.ChoiceDelta(role="assistant", tool_calls=[call]))
            )
        else:
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id="1", delta=llm.ChoiceDelta(role="assistant", content=self._reply.text)
                )
            )
        words = len(self._reply.text.split())
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id="1",
                usage=llm.CompletionUsage(
                    completion_tokens=words, prompt_tokens=10, total_tokens=10 + words
                ),
            )
        )
