"""Every LLM client of a job process reuses one TLS context instead of building its own."""

from __future__ import annotations

import asyncio

from convoi.definitions.providers import OpenAILLM
from convoi.pipeline.factory import build_llm
from convoi.pipeline.tls import shared_tls_context
from convoi.settings import WorkerSettings


def _tls_context_of(llm: object) -> object:
    http = llm._client._client  # type: ignore[attr-defined]  # openai SDK → its httpx client
    return http._transport._pool._ssl_context


def test_llms_of_all_calls_share_the_process_tls_context() -> None:
    settings = WorkerSettings(openai_api_key="sk-test", openai_base_url="http://127.0.0.1:9/v1")
    first = build_llm(OpenAILLM(model="gpt-4o-mini"), settings)
    second = build_llm(OpenAILLM(model="gpt-4o"), settings)
    assert _tls_context_of(first) is _tls_context_of(second) is shared_tls_context()
    assert str(first._client.base_url) == "http://127.0.0.1:9/v1/"  # type: ignore[attr-defined]
    asyncio.run(first.aclose())
    assert first._client.is_closed()  # type: ignore[attr-defined]  # closed with the LLM
    asyncio.run(second.aclose())
