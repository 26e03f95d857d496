"""First uses done once per worker, before any call, instead of on a call's event loop.

A fresh job process pays, on its first call, for work that libraries leave to first use; while
the greeting starts, the job's event loop was blocked (livekit's "event loop blocked" warnings,
measured in the benchmark's job logs) by:

* the providers' TLS contexts: Convoi's for the OpenAI clients (:mod:`convoi.pipeline.tls`) and
  livekit's shared HTTP session building its own (the CA bundle parsed, 140–150 ms);
* pydantic completing livekit's deferred models (``ChatMessage`` when the instructions are set:
  140–205 ms) and the OpenAI stream's chunk models;
* anyio importing its asyncio backend for the OpenAI client's first request (≈ 105 ms);
* livekit's hyphenator, built when the first agent speech ends (≈ 230 ms in a profile);
* livekit's speaking-rate estimate for synchronised transcripts (see
  :mod:`convoi.worker.speaking_rate`).

:func:`warm_up` does them all. It runs in livekit's forkserver (:mod:`convoi.worker.preload`),
so every job process is forked with them done, and again (cheaply: each step is done once per
process) in each job process's setup hook, for process start methods without a forkserver. No
thread or event loop is started.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

from pydantic import BaseModel

from convoi.pipeline.tls import shared_tls_context
from convoi.worker import speaking_rate
from convoi.worker.log import logger

__all__ = ["LAZY_MODULES", "PYDANTIC_MODULES", "complete_pydantic_models", "warm_up"]

PYDANTIC_MODULES = (
    "livekit.",
    "openai.types.chat.chat_completion_chunk",
    "openai.types.completion_usage",
)
"""Modules (prefixes) whose deferred pydantic models a call builds: livekit's (chat context,
events) and the OpenAI stream's chunks. Not all of ``openai.types`` (about 1900 models, 1 s)."""

LAZY_MODULES = (
    "anyio._backends._asyncio",
    "anyio.abc._testing",
    "anyio.streams.memory",
    "jiter",
    "livekit.agents.llm.async_toolset",
    "livekit.rtc.resources",
    "numpy.fft",
    "openai.lib._chat_completion_resources",
    "openai.lib.streaming.chat",
    "openai.resources.chat",
    "openai.resources.models",
)
"""Modules a job process imported during its first call (measured: its ``sys.modules`` at the
call's end against the forkserver's): the OpenAI client's resources and stream parser, its HTTP
stack's anyio backend, numpy's FFT (livekit's speaking-rate estimate; 190 ms on a busy machine)."""


def complete_pydantic_models(prefixes: Iterable[str]) -> int:
    """Build the schema of every not-yet-complete pydantic model defined in a loaded module whose
    name starts with one of ``prefixes``; how many were built."""
    wanted = tuple(prefixes)
    built = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(wanted):
            continue
        for value in list(vars(module).values()):
            if _incomplete_model_of(value, name):
                try:
                    value.model_rebuild()
                    built += 1
                except Exception as exc:  # a model that cannot be built yet stays lazy
                    logger.debug("could not build %s: %s", value.__qualname__, type(exc).__name__)
    return built


def _incomplete_model_of(value: object, module: str) -> bool:
    return (
        isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module
        and not value.__pydantic_complete__
    )


_warmed = False
"""Set once done: a forked job process inherits it and does not scan the modules again (reading
every module's objects would touch their pages, making shared memory private)."""


def warm_up() -> None:
    """Do every first use this module's docstring lists, once per process (a forked process
    inherits it done)."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    shared_tls_context()  # the providers' HTTP clients' context (convoi.pipeline.tls)
    _livekit_tls_context()
    for module in LAZY_MODULES:
        importlib.import_module(module)
    complete_pydantic_models(PYDANTIC_MODULES)
    _rehearse_chat_models()
    speaking_rate.install()


def _rehearse_chat_models() -> None:
    """Build the chat models a session builds first (pydantic's per-model first-use work)."""
    from livekit.agents import llm
    from livekit.agents.tokenize import basic

    llm.ChatContext().add_message(role="system", content="warm-up")
    llm.AgentConfigUpdate(instructions="warm-up", tools_added=None)
    basic.hyphenate_word("warming")  # the transcript synchroniser's hyphenator (≈ 0.2 s to build)


def _livekit_tls_context() -> None:
    """livekit's HTTP session context (cached per trust store by livekit itself)."""
    try:
        from livekit.agents.utils.http_context import _create_ssl_context
    except ImportError:  # another livekit-agents: it builds its context on first use
        return
    _create_ssl_context()
