"""OpenAI chat-completions emulator (``/openai/v1``).

Speaks what ``livekit.plugins.openai.LLM`` (through the ``openai`` SDK) expects: streamed SSE
``chat.completion.chunk`` objects (text deltas, ``delta.tool_calls`` with index/id/name and
argument fragments), a ``finish_reason``, a usage-only last chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

from aiohttp import web

from .common import stall
from .llm_script import Answer, choose_answer, prompt_tokens
from .state import STATE_KEY, EmulatorState, Record

__all__ = ["add_routes"]

logger = logging.getLogger("convoi.devstack.emulators.llm")

_MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "gpt-5-mini"]


def add_routes(app: web.Application, prefix: str = "/openai/v1") -> None:
    """Register the OpenAI routes under ``prefix``."""
    app.router.add_post(f"{prefix}/chat/completions", _chat_completions)
    app.router.add_get(f"{prefix}/models", _models)


def _error(status: int, message: str, err_type: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": err_type, "param": None, "code": None}},
        status=status,
    )


def _authorized(request: web.Request) -> bool:
    auth = request.headers.get("Authorization", "")
    return auth.startswith("Bearer ") and len(auth) > len("Bearer ")


async def _models(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "missing api key", "invalid_request_error")
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "emulator"} for m in _MODELS]
    return web.json_response({"object": "list", "data": data})


def _tool_names(tools: Any) -> list[str]:
    names = []
    for t in tools or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and fn.get("name"):
            names.append(fn["name"])
    return names


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not _authorized(request):
        return _error(401, "missing api key", "invalid_request_error")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body is not JSON", "invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not body.get("model"):
        return _error(400, "`model` and `messages` are required", "invalid_request_error")

    request_no = state.next_request_no("llm")
    fault = state.fault_for("llm", request_no)
    rec = state.new_record(
        "llm",
        "chat.completions",
        request_no=request_no,
        model=body.get("model"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stream=bool(body.get("stream")),
        messages=messages,
        tools=_tool_names(body.get("tools")),
        tool_choice=body.get("tool_choice"),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_completion_tokens=body.get("max_completion_tokens"),
        params={k: v for k, v in body.items() if k not in ("messages", "tools")},
        fault=fault.kind if fault else None,
    )
    logger.info("llm request #%d model=%s fault=%s", request_no, body.get("model"), rec["fault"])
    try:
        return await _respond(request, state, rec, body, fault)
    finally:
        state.finish(rec)


async def _respond(
    request: web.Request, state: EmulatorState, rec: Record, body: dict[str, Any], fault: Any
) -> web.StreamResponse:
    kind = fault.kind if fault else None
    if kind == "http_500":
        rec["status"] = 500
        return _error(500, "emulated server error", "server_error")
    if kind == "http_429":
        rec["status"] = 429
        return _error(429, "emulated rate limit", "rate_limit_exceeded")
    if kind == "stall":
        await stall(request, fault.stall_ms)
        if fault.stall_ms is None:
            rec["status"] = "stalled"
            return web.Response(status=504)

    answer = choose_answer(
        state.scenario,
        body["messages"],
        state.rule_uses,
        tools=_tool_names(body.get("tools")),
        tool_choice=body.get("tool_choice"),
    )
    usage = _usage(prompt_tokens(body["messages"]), answer.completion_tokens)
    rec.update(
        rule=answer.rule_index,
        response_text=answer.text,
        response_tool_call=answer.tool_call.model_dump() if answer.tool_call else None,
        usage=usage,
    )

    latency = state.scenario.latency
    if latency.llm_ttft_ms:
        await asyncio.sleep(latency.llm_ttft_ms / 1000)

    completion_id = f"chatcmpl-emu{rec['seq']}"
    if not body.get("stream"):
        rec["status"] = 200
        rec["first_token_time"] = time.time()
        return web.json_response(_completion_json(completion_id, body["model"], answer, usage))

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return await _stream(
        request,
        rec,
        completion_id,
        body["model"],
        answer,
        usage if include_usage else None,
        drop=kind == "drop",
        chunk_ms=latency.llm_chunk_ms,
    )


def _completion_json(cid: str, model: str, answer: Answer, usage: dict[str, Any]) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.tool_call:
        message["tool_calls"] = [
            {
                "id": f"call_{cid}_0",
                "type": "function",
                "function": {"name": answer.tool_call.name, "arguments": answer.arguments_json},
            }
        ]
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if answer.tool_call else "stop",
            }
        ],
        "usage": usage,
    }


def _deltas(answer: Answer, call_id: str) -> list[dict[str, Any]]:
    """The streamed deltas: role, text pieces (one per word), tool call start + argument parts."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in re.findall(r"\S+\s*|\s+", answer.text)]
    if answer.tool_call:
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": answer.tool_call.name, "arguments": ""},
                    }
                ]
            }
        )
        args = answer.arguments_json
        mid = len(args) // 2
        for part in (args[:mid], args[mid:]):
            if part:
                deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
    return deltas


async def _stream(
    request: web.Request,
    rec: Record,
    cid: str,
    model: str,
    answer: Answer,
    usage: dict[str, Any] | None,
    *,
    drop: bool,
    chunk_ms: int,
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        obj = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(obj)}\n\n".encode()

    deltas = _deltas(answer, f"call_{cid}_0")
    if drop:
        deltas = deltas[: max(1, len(deltas) // 2)]
    for i, delta in enumerate(deltas):
        if i and chunk_ms:
            await asyncio.sleep(chunk_ms / 1000)
        await resp.write(chunk([{"index": 0, "delta": delta, "finish_reason": None}]))
        if rec.get("first_token_time") is None and (delta.get("content") or "tool_calls" in delta):
            rec["first_token_time"] = time.time()  # epoch: the first token (text or tool call) sent
    if drop:
        rec["status"] = "dropped"
        logger.info("llm request #%d: dropping the stream", rec["request_no"])
        if request.transport is not None:
            request.transport.close()
        return resp

    finish = "tool_calls" if answer.tool_call else "stop"
    await resp.write(chunk([{"index": 0, "delta": {}, "finish_reason": finish}]))
    if usage is not None:
        await resp.write(chunk([], usage=usage))
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    rec["status"] = 200
    return resp
