"""The provider emulators, driven by the REAL livekit plugins (only base_url/api_key differ)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from livekit import rtc
from livekit.agents import APIConnectOptions, APIError, APIStatusError, llm, stt
from livekit.plugins import deepgram, elevenlabs, openai

from convoi.devstack import audio
from convoi.devstack.cli import DEFAULT_SCENARIO
from convoi.devstack.emulators import (
    EmulatorState,
    RunningEmulators,
    load_scenario,
    running_emulators,
)
from convoi.devstack.emulators.endpointing import EnergyDetector
from convoi.devstack.emulators.scenario import Scenario, SttSettings
from tests.helpers import free_port, wait_until

SCENARIOS = Path(__file__).parent / "scenarios"
BASIC = load_scenario(SCENARIOS / "web_basic.yaml")
TIMEOUT = 15.0

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulators]:
    async with running_emulators(scenario=BASIC) as e:
        yield e


async def _control(
    emu: RunningEmulators, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{emu.url}/_emulator/{path}", json=body) as r,
    ):
        return r.status, await r.json()


async def _records(emu: RunningEmulators, provider: str) -> list[dict[str, Any]]:
    status, records = await _control(emu, "GET", f"requests?provider={provider}")
    assert status == 200
    return records


# -- LLM ----------------------------------------------------------------------------------


def _oai(emu: RunningEmulators, **kw: Any) -> openai.LLM:
    return openai.LLM(
        base_url=emu.openai_base_url, api_key="test", model="gpt-4o-mini", temperature=0.3, **kw
    )


async def _collect(stream: llm.LLMStream) -> tuple[str, llm.CompletionUsage | None, list]:
    text, usage, calls = "", None, []
    async with stream:
        async for chunk in stream:
            if chunk.delta:
                text += chunk.delta.content or ""
                calls += chunk.delta.tool_calls or []
            if chunk.usage:
                usage = chunk.usage
    return text, usage, calls


async def test_llm_scripted_text_usage_and_record(emu: RunningEmulators) -> None:
    model = _oai(emu)
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="system", content="You are a helpful phone agent.")
    greeting, _, _ = await _collect(model.chat(chat_ctx=ctx))
    assert greeting == "Hello, thanks for calling. How can I help you today?"

    ctx.add_message(role="assistant", content=greeting)
    ctx.add_message(role="user", content="Hi, I have a question about my bill.")
    text, usage, calls = await _collect(model.chat(chat_ctx=ctx))
    assert text == "Sure, let me help with your bill. Your balance is forty two dollars."
    assert calls == []
    prompt_text = (
        "You are a helpful phone agent. Hello, thanks for calling. How can I help you today? "
        "Hi, I have a question about my bill."
    )
    prompt_words = len(prompt_text.split())
    assert usage is not None
    assert usage.prompt_tokens == prompt_words
    assert usage.completion_tokens == len(text.split())
    assert usage.total_tokens == prompt_words + len(text.split())

    ctx.add_message(role="assistant", content=text)
    ctx.add_message(role="user", content="Thanks, that's all.")
    bye, _, _ = await _collect(model.chat(chat_ctx=ctx))
    assert bye == "You're welcome. Goodbye!"

    records = await _records(emu, "llm")
    assert [r["request_no"] for r in records] == [1, 2, 3]
    assert all(r["model"] == "gpt-4o-mini" and r["temperature"] == 0.3 for r in records)
    assert records[1]["usage"]["prompt_tokens"] == prompt_words
    assert records[1]["messages"][-1] == {
        "role": "user",
        "content": "Hi, I have a question about my bill.",
    }
    assert all(r["done"] for r in records)
    # the benchmark's "LLM first token" moment: after the request arrived, before it ended
    assert all(r["time"] <= r["first_token_time"] <= r["end_time"] for r in records)
    _, usage_totals = await _control(emu, "GET", "usage")
    assert usage_totals["llm"]["requests"] == 3
    await model.aclose()


@llm.function_tool
async def transfer_to_billing(reason: str) -> str:
    """Transfer the caller to the billing department.

    Args:
        reason: why the caller wants billing
    """
    return "transferred"


async def test_llm_tool_call_then_answer_without_loop(emu: RunningEmulators) -> None:
    scenario = load_scenario(SCENARIOS / "tool_transfer.yaml")
    status, _ = await _control(emu, "POST", "scenario", scenario.model_dump(mode="json"))
    assert status == 200
    model = _oai(emu)
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="I need to talk to billing please.")
    text, _, calls = await _collect(model.chat(chat_ctx=ctx, tools=[transfer_to_billing]))
    assert text == ""
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "transfer_to_billing"
    assert json.loads(call.arguments) == {"reason": "billing question"}
    assert call.call_id

    ctx.insert(
        [
            llm.FunctionCall(call_id=call.call_id, name=call.name, arguments=call.arguments),
            llm.FunctionCallOutput(
                call_id=call.call_id, name=call.name, output="transferred", is_error=False
            ),
        ]
    )
    text, _, calls = await _collect(model.chat(chat_ctx=ctx, tools=[transfer_to_billing]))
    assert calls == []
    assert text == "I'm transferring you to billing now."

    records = await _records(emu, "llm")
    assert [r["tools"] for r in records] == [["transfer_to_billing"]] * 2
    assert records[0]["response_tool_call"]["name"] == "transfer_to_billing"
    arguments_json = json.dumps({"reason": "billing question"})
    assert records[0]["usage"]["completion_tokens"] == 1 + len(arguments_json.split())
    await model.aclose()


async def test_llm_http_500_is_retried(emu: RunningEmulators) -> None:
    scenario = {
        **BASIC.model_dump(mode="json"),
        "faults": [{"provider": "llm", "on_request": 1, "kind": "http_500"}],
    }
    status, _ = await _control(emu, "POST", "scenario", scenario)
    assert status == 200
    model = _oai(emu)
    errors: list[llm.LLMError] = []
    model.on("error", errors.append)
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="A question about my bill.")
    text, _, _ = await _collect(model.chat(chat_ctx=ctx))
    assert text.startswith("Sure, let me help with your bill.")
    assert len(errors) == 1 and errors[0].recoverable
    assert isinstance(errors[0].error, APIStatusError) and errors[0].error.status_code == 500
    records = await _records(emu, "llm")
    assert [(r["fault"], r["status"]) for r in records] == [("http_500", 500), (None, 200)]

    # without retries the plugin raises the status error
    await _control(emu, "POST", "reset")
    with pytest.raises(APIStatusError) as exc:
        await _collect(model.chat(chat_ctx=ctx, conn_options=APIConnectOptions(max_retry=0)))
    assert exc.value.status_code == 500
    await model.aclose()


async def test_llm_drop_mid_stream_raises(emu: RunningEmulators) -> None:
    scenario = Scenario.model_validate(
        {**BASIC.model_dump(), "faults": [{"provider": "llm", "on_request": 1, "kind": "drop"}]}
    )
    emu.state.load(scenario)
    model = _oai(emu)
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="About my bill.")
    with pytest.raises(APIError):
        await asyncio.wait_for(_collect(model.chat(chat_ctx=ctx)), TIMEOUT)
    assert emu.state.select("llm")[0]["status"] == "dropped"
    await model.aclose()


async def test_openai_auth_and_models(emu: RunningEmulators) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{emu.openai_base_url}/chat/completions", json={}) as r:
            assert r.status == 401
        headers = {"Authorization": "Bearer test"}
        async with s.get(f"{emu.openai_base_url}/models", headers=headers) as r:
            assert "gpt-4o-mini" in [m["id"] for m in (await r.json())["data"]]
        body = {"model": "m", "messages": [{"role": "user", "content": "my bill"}]}
        async with s.post(
            f"{emu.openai_base_url}/chat/completions", json=body, headers=headers
        ) as r:
            data = await r.json()
    assert data["choices"][0]["message"]["content"].startswith("Sure")
    assert data["usage"]["prompt_tokens"] == 2
    assert emu.state.select("llm")[0]["stream"] is False


# -- STT ----------------------------------------------------------------------------------


def _frames(samples: np.ndarray, rate: int = 16000, ms: int = 20) -> list[rtc.AudioFrame]:
    n = rate * ms // 1000
    out = []
    for i in range(0, samples.size, n):
        chunk = samples[i : i + n]
        if chunk.size < n:
            chunk = np.concatenate([chunk, np.zeros(n - chunk.size, dtype=np.int16)])
        out.append(rtc.AudioFrame(chunk.tobytes(), rate, 1, n))
    return out


def _silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def test_energy_detector_ignores_blips_and_ends_after_silence() -> None:
    rate = 16000
    det = EnergyDetector(rate, SttSettings())
    blip = audio.tone_for_text("x", rate)[: rate * 60 // 1000]  # 60 ms
    speech = audio.synthesize("Hello there, how are you?", rate)
    pcm = np.concatenate([_silence(0.2), blip, _silence(0.6), speech, _silence(0.6)])
    marks = det.feed(pcm.tobytes())
    kinds = [m.kind for m in marks if m.kind != "interim"]
    assert kinds == ["start", "end"]
    start, end = marks[0], marks[-1]
    assert 0.8 < start.start < 1.0 + 0.1  # after the blip and the speech's leading silence
    assert end.end - end.start > 0.8
    assert det.finalize() is None


async def _stt_events(
    emu: RunningEmulators, samples: np.ndarray, n_end: int, *, end_input: bool = False
) -> list[stt.SpeechEvent]:
    async with aiohttp.ClientSession() as session:
        dg = deepgram.STT(base_url=emu.deepgram_base_url, api_key="test", http_session=session)
        stream = dg.stream()
        events: list[stt.SpeechEvent] = []
        ended = asyncio.Event()

        async def read() -> None:
            async for ev in stream:
                events.append(ev)
                kinds = [e.type for e in events]
                if kinds.count(stt.SpeechEventType.END_OF_SPEECH) >= n_end:
                    ended.set()

        reader = asyncio.create_task(read())
        for frame in _frames(samples):
            stream.push_frame(frame)
        if end_input:
            stream.end_input()
        try:
            await asyncio.wait_for(ended.wait(), TIMEOUT)
        finally:
            await stream.aclose()
            reader.cancel()
    return events


async def test_deepgram_stream_speech_then_silence(emu: RunningEmulators) -> None:
    rate = 16000
    blip = audio.tone_for_text("x", rate)[: rate * 60 // 1000]
    pcm = np.concatenate(
        [
            _silence(0.3),
            blip,
            _silence(0.6),
            audio.synthesize("Hi, I have a question about my bill.", rate),
            _silence(0.8),
            audio.synthesize("Thanks, that's all.", rate),
            _silence(0.8),
        ]
    )
    events = await _stt_events(emu, pcm, n_end=2)
    T = stt.SpeechEventType
    kinds = [e.type for e in events if e.type != T.RECOGNITION_USAGE]
    main = [k for k in kinds if k != T.INTERIM_TRANSCRIPT]
    assert main == [T.START_OF_SPEECH, T.FINAL_TRANSCRIPT, T.END_OF_SPEECH] * 2
    assert T.INTERIM_TRANSCRIPT in kinds
    finals = [e.alternatives[0] for e in events if e.type == T.FINAL_TRANSCRIPT]
    assert [f.text for f in finals] == [
        "Hi, I have a question about my bill.",
        "Thanks, that's all.",
    ]
    assert 0.9 < finals[0].start_time < finals[0].end_time < finals[1].start_time
    assert finals[0].words is not None and finals[0].words[-1] == "bill."

    (rec,) = await _records(emu, "stt")
    assert rec["model"] == "nova-3" and rec["language"] == "en-US"
    assert rec["sample_rate"] == 16000 and rec["query"]["encoding"] == "linear16"
    assert rec["audio_seconds"] > 5.0
    finals_rec = [t for t in rec["transcripts"] if t["is_final"]]
    assert [t["transcript"] for t in finals_rec] == [f.text for f in finals]
    assert len(rec["speech_started"]) == 2  # the blip did not count
    # the benchmark's "STT final sent" moment (epoch), in order, on finals only
    sent = [t.get("sent_at") for t in rec["transcripts"]]
    assert [s is not None for s in sent] == [t["is_final"] for t in rec["transcripts"]]
    first, second = (at for at in sent if at is not None)
    assert rec["time"] < first < second


async def test_deepgram_end_input_finalizes_and_server_closes(emu: RunningEmulators) -> None:
    pcm = np.concatenate([_silence(0.2), audio.synthesize("Hi, I have a question.", 16000)])
    events = await _stt_events(emu, pcm, n_end=1, end_input=True)
    finals = [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert finals[0].alternatives[0].text == "Hi, I have a question about my bill."
    rec = emu.state.select("stt")[0]
    await wait_until(lambda: rec["done"], "the STT record to be done", TIMEOUT, interval=0.02)
    assert rec["closed_by"] == "CloseStream"
    assert rec["control"]["Finalize"] >= 1 and rec["control"]["CloseStream"] == 1
    assert rec["transcripts"][-1]["is_final"]


async def test_deepgram_auth_required_and_prerecorded(emu: RunningEmulators) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await session.ws_connect(emu.deepgram_base_url.replace("http", "ws"))
        assert exc.value.status == 401
        dg = deepgram.STT(base_url=emu.deepgram_base_url, api_key="test", http_session=session)
        speech = np.concatenate([audio.synthesize("Hello there.", 16000), _silence(0.5)])
        ev = await dg.recognize(_frames(speech))
    assert ev.alternatives[0].text == "Hi, I have a question about my bill."
    assert emu.state.select("stt")[0]["kind"] == "listen.http"


# -- TTS ----------------------------------------------------------------------------------

SENTENCES = (
    "Hello there, this is the first sentence. And here comes the second one.",
    "Thank you for calling. Have a wonderful day.",
)


async def _tts_audio(tts: elevenlabs.TTS, text: str) -> rtc.AudioFrame:
    stream = tts.stream()
    stream.push_text(text)
    stream.end_input()
    frames = []
    async with stream:
        async for ev in stream:
            frames.append(ev.frame)
    return rtc.combine_audio_frames(frames)


def _check_audio(frame: rtc.AudioFrame, text: str, rate: int) -> None:
    assert frame.sample_rate == rate
    expected = audio.synthesize(text, rate).size / rate
    assert frame.duration == pytest.approx(expected, rel=0.35)
    assert audio.rms(np.frombuffer(frame.data, dtype=np.int16)) > audio.SPEECH_RMS_THRESHOLD


async def test_elevenlabs_pcm_two_turns_one_socket(emu: RunningEmulators) -> None:
    async with aiohttp.ClientSession() as session:
        tts = elevenlabs.TTS(
            base_url=emu.elevenlabs_base_url,
            api_key="test",
            voice_id="voice_x",
            encoding="pcm_24000",
            http_session=session,
        )
        for text in SENTENCES:
            frame = await asyncio.wait_for(_tts_audio(tts, text), TIMEOUT)
            _check_audio(frame, text, 24000)
        await tts.aclose()
    records = await _records(emu, "tts")
    assert [r["text"] for r in records] == list(SENTENCES)
    assert len({r["connection"] for r in records}) == 1
    assert all(r["voice_id"] == "voice_x" for r in records)
    assert all(r["output_format"] == "pcm_24000" for r in records)
    assert all(r["model_id"] == "eleven_turbo_v2_5" for r in records)
    assert all(
        r["is_final_sent"] and r["first_audio_time"] >= r["first_text_time"] for r in records
    )
    assert len(records[0]["segments"]) == 2  # one flush per sentence (auto_mode)


async def test_elevenlabs_default_mp3_is_one_stream(emu: RunningEmulators) -> None:
    async with aiohttp.ClientSession() as session:
        tts = elevenlabs.TTS(
            base_url=emu.elevenlabs_base_url,
            api_key="test",
            voice_id="voice_x",
            http_session=session,
        )
        frame = await asyncio.wait_for(_tts_audio(tts, SENTENCES[0]), TIMEOUT)
        await tts.aclose()
    _check_audio(frame, SENTENCES[0], 22050)
    assert emu.state.select("tts")[0]["output_format"] == "mp3_22050_32"


async def test_elevenlabs_http_synthesize_and_auth(emu: RunningEmulators) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{emu.elevenlabs_base_url}/text-to-speech/voice_x/multi-stream-input"
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await session.ws_connect(url.replace("http", "ws"))
        assert exc.value.status == 401
        tts = elevenlabs.TTS(
            base_url=emu.elevenlabs_base_url,
            api_key="test",
            voice_id="voice_y",
            encoding="pcm_16000",
            http_session=session,
        )
        frames = [ev.frame async for ev in tts.synthesize(SENTENCES[1])]
        _check_audio(rtc.combine_audio_frames(frames), SENTENCES[1], 16000)
        mp3_tts = elevenlabs.TTS(
            base_url=emu.elevenlabs_base_url,
            api_key="test",
            voice_id="voice_y",
            http_session=session,
        )
        frames = [ev.frame async for ev in mp3_tts.synthesize(SENTENCES[0])]
        _check_audio(rtc.combine_audio_frames(frames), SENTENCES[0], 22050)
    pcm_rec, mp3_rec = emu.state.select("tts")
    assert pcm_rec["kind"] == "http" and pcm_rec["voice_id"] == "voice_y"
    assert pcm_rec["text"] == SENTENCES[1] and pcm_rec["output_format"] == "pcm_16000"
    assert mp3_rec["output_format"] == "mp3_22050_32" and mp3_rec["status"] == 200


# -- CLI ----------------------------------------------------------------------------------


@pytest.mark.server  # the emulators as a subprocess
async def test_cli_serves_and_records(tmp_path: Path) -> None:
    port, record = free_port(), tmp_path / "records.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "convoi.devstack.emulators",
        "--port",
        str(port),
        "--scenario",
        str(SCENARIOS / "web_basic.yaml"),
        "--record",
        str(record),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        url = f"http://127.0.0.1:{port}"
        assert line.decode().strip() == f"emulators listening on {url}"
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/_emulator/health") as r:
                assert (await r.json())["ok"]
            body = {"model": "m", "messages": [{"role": "user", "content": "bill"}]}
            headers = {"Authorization": "Bearer secret-key"}
            async with s.post(f"{url}/openai/v1/chat/completions", json=body, headers=headers):
                pass
        lines = record.read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["provider"] == "llm"
        assert "secret-key" not in record.read_text()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), TIMEOUT)


async def test_elevenlabs_context_error_is_retried(emu: RunningEmulators) -> None:
    faults = [{"provider": "tts", "on_request": 1, "kind": "http_500"}]
    emu.state.load(Scenario.model_validate({**BASIC.model_dump(), "faults": faults}))
    async with aiohttp.ClientSession() as session:
        tts = elevenlabs.TTS(
            base_url=emu.elevenlabs_base_url,
            api_key="test",
            encoding="pcm_24000",
            http_session=session,
        )
        frame = await asyncio.wait_for(_tts_audio(tts, SENTENCES[1]), TIMEOUT)
        await tts.aclose()
    _check_audio(frame, SENTENCES[1], 24000)
    failed, ok = emu.state.select("tts")
    assert (failed["fault"], failed["closed_by"], failed["done"]) == (
        "http_500",
        "fault_error",
        True,
    )
    assert ok["is_final_sent"] and ok["connection"] == failed["connection"]


# -- the devstack's default scenario (the README walkthrough) -------------------------------

README_SAY = "Hi, I have a question about my bill."
"""What the README's walkthrough has the caller say (``python -m convoi.devstack.caller --say``)."""


def test_caller_lines_run_out_unless_the_scenario_repeats_them() -> None:
    assert EmulatorState(Scenario()).take_caller() is None  # no script: empty finals, no reply
    once = EmulatorState(Scenario(caller=["a", "b"]))
    assert [once.take_caller() for _ in range(3)] == ["a", "b", None]
    repeating = EmulatorState(Scenario(caller=["a", "b"], caller_repeat=True))
    assert repeating.peek_caller() == "a"
    assert [repeating.take_caller() for _ in range(5)] == ["a", "b", "a", "b", "a"]
    repeating.reset()
    assert repeating.take_caller() == "a"


async def test_devstack_default_scenario_answers_the_readme_caller_on_every_call() -> None:
    """``convoi-devstack up`` loads ``DEFAULT_SCENARIO``: the caller's ``--say`` line becomes a
    final transcript (live Deepgram stream, as the worker uses) that the LLM answers, call after
    call, more calls than the script has lines."""
    speech = np.concatenate([_silence(0.3), audio.synthesize(README_SAY, 16000), _silence(0.8)])
    finals, replies = [], []
    async with running_emulators(scenario=load_scenario(DEFAULT_SCENARIO)) as emu:
        model = _oai(emu)
        for _ in range(3):
            events = await _stt_events(emu, speech, n_end=1)
            (final,) = [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
            finals.append(final.alternatives[0].text)
            ctx = llm.ChatContext.empty()
            ctx.add_message(role="system", content="You are Convoi support.")
            ctx.add_message(role="assistant", content="Hi, how can I help?")  # README greeting
            ctx.add_message(role="user", content=finals[-1])
            text, _, _ = await asyncio.wait_for(_collect(model.chat(chat_ctx=ctx)), TIMEOUT)
            replies.append(text)
        await model.aclose()
    assert finals == [README_SAY, "Thanks, that's all.", README_SAY]
    assert replies == [
        "Sure. Your balance is forty two dollars, due on the first.",
        "You're welcome. Have a great day!",
        "Sure. Your balance is forty two dollars, due on the first.",
    ]
