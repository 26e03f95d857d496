"""The worker's warm-up does a call's first uses before any call."""

from __future__ import annotations

import sys
import types

import pydantic
import pytest
from livekit.agents.utils import http_context
from livekit.agents.voice.transcription import _speaking_rate

from convoi.worker import warmup
from convoi.worker.speaking_rate import LIVEKIT_SPECTRAL_FLUX


def test_deferred_models_of_the_given_modules_are_built(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("convoi_test_deferred")

    class Deferred(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(defer_build=True)
        text: str

    Deferred.__module__ = module.__name__
    module.Deferred = Deferred  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert not Deferred.__pydantic_complete__
    assert warmup.complete_pydantic_models(("some_other_prefix",)) == 0
    assert not Deferred.__pydantic_complete__
    assert warmup.complete_pydantic_models(("convoi_test_deferred",)) == 1
    assert Deferred.__pydantic_complete__
    assert warmup.complete_pydantic_models(("convoi_test_deferred",)) == 0  # done once


def test_warm_up_leaves_nothing_for_the_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from livekit.agents import llm

    monkeypatch.setattr(_speaking_rate.SpeakingRateStream, "_spectral_flux", LIVEKIT_SPECTRAL_FLUX)
    http_context._ssl_context_for.cache_clear()
    monkeypatch.setattr(warmup, "_warmed", False)
    warmup.warm_up()
    assert llm.ChatMessage.__pydantic_complete__
    assert http_context._ssl_context_for.cache_info().currsize == 1  # the session's context
    assert _speaking_rate.SpeakingRateStream._spectral_flux is not LIVEKIT_SPECTRAL_FLUX
    for name in warmup.LAZY_MODULES:
        assert name in sys.modules


def test_warm_up_is_done_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(warmup, "_warmed", False)
    monkeypatch.setattr(warmup, "complete_pydantic_models", lambda p: calls.append(tuple(p)) or 0)
    warmup.warm_up()
    warmup.warm_up()  # a forked job process's setup hook: already done in the forkserver
    assert calls == [warmup.PYDANTIC_MODULES]
