"""Deepgram listen emulator (``/deepgram/v1/listen``): live WebSocket and prerecorded HTTP.

Live: ``Authorization: Token <key>`` is required. Binary frames are int16 LE PCM at the
``sample_rate`` query parameter; an :class:`~.endpointing.EnergyDetector` finds speech in
them. On onset it sends ``SpeechStarted`` (when ``vad_events=true``), while speech goes on
interim ``Results`` with a growing prefix of the next scripted caller utterance (when
``interim_results=true``), and after the configured silence a final ``Results``
(``is_final`` and ``speech_final``) carrying that utterance, then ``UtteranceEnd``. Word
times count audio seconds since the connection opened. ``KeepAlive`` is ignored,
``Finalize`` ends a pending utterance now, ``CloseStream`` ends it, sends ``Metadata`` and
closes the socket (the plugin waits for that close).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
import uuid
import wave
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from .common import scrub, stall
from .endpointing import EnergyDetector, SpeechMark
from .scenario import Fault
from .state import STATE_KEY, EmulatorState, Record

__all__ = ["add_routes", "results_message"]

logger = logging.getLogger("convoi.devstack.emulators.stt")

_MODEL_INFO = {"name": "emulator", "version": "1", "arch": "emulator"}


def add_routes(app: web.Application, path: str = "/deepgram/v1/listen") -> None:
    """Register the Deepgram routes (WebSocket GET and prerecorded POST) at ``path``."""
    app.router.add_get(path, _listen_ws)
    app.router.add_post(path, _listen_http)


def _authorized(request: web.Request) -> bool:
    auth = request.headers.get("Authorization", "")
    scheme, _, key = auth.partition(" ")
    return scheme.lower() in ("token", "bearer") and bool(key.strip())


def _query(request: web.Request) -> dict[str, Any]:
    """Query parameters; repeated keys (keyterm, keywords, replace...) become lists."""
    out: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        out[key] = values if len(values) > 1 else values[0]
    return scrub(out)


def _words(transcript: str, start: float, end: float) -> list[dict[str, Any]]:
    tokens = transcript.split()
    if not tokens:
        return []
    span = max(end - start, 0.0) / len(tokens)
    return [
        {
            "word": re.sub(r"[^\w']", "", tok).lower() or tok.lower(),
            "punctuated_word": tok,
            "start": round(start + i * span, 3),
            "end": round(start + (i + 1) * span, 3),
            "confidence": 0.99,
        }
        for i, tok in enumerate(tokens)
    ]


def results_message(
    request_id: str,
    transcript: str,
    start: float,
    end: float,
    *,
    is_final: bool,
    speech_final: bool,
    from_finalize: bool = False,
) -> dict[str, Any]:
    """A live ``Results`` message with evenly spread word times between ``start`` and ``end``."""
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": round(max(end - start, 0.0), 3),
        "start": round(start, 3),
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {
            "alternatives": [
                {
                    "transcript": transcript,
                    "confidence": 0.99 if transcript else 0.0,
                    "words": _words(transcript, start, end),
                }
            ]
        },
        "metadata": {"request_id": request_id, "model_info": _MODEL_INFO, "model_uuid": "emu"},
    }


class _LiveSession:
    """One live connection: feeds the detector and sends the Deepgram messages."""

    def __init__(
        self, state: EmulatorState, ws: web.WebSocketResponse, rec: Record, query: dict
    ) -> None:
        self.state = state
        self.ws = ws
        self.rec = rec
        self.request_id = str(uuid.uuid4())
        self.t0 = time.monotonic()
        sample_rate = int(query.get("sample_rate", 16000))
        self.bytes_per_second = sample_rate * int(query.get("channels", 1)) * 2
        self.detector = EnergyDetector(
            sample_rate, state.scenario.stt, channels=int(query.get("channels", 1))
        )
        self.vad_events = query.get("vad_events", "false") == "true"
        self.interim_results = query.get("interim_results", "false") == "true"
        self.audio_bytes = 0
        self.interims = 0

    async def send(self, msg: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(msg))

    def _log_transcript(self, msg: dict[str, Any]) -> None:
        self.rec["transcripts"].append(
            {
                "t": round(time.monotonic() - self.t0, 3),
                "audio_t": round(self.detector.audio_seconds, 3),
                "is_final": msg["is_final"],
                "speech_final": msg["speech_final"],
                "transcript": msg["channel"]["alternatives"][0]["transcript"],
                "start": msg["start"],
                "end": round(msg["start"] + msg["duration"], 3),
            }
        )

    async def audio(self, data: bytes) -> None:
        self.audio_bytes += len(data)
        self.rec["audio_seconds"] = round(self.audio_bytes / self.bytes_per_second, 3)
        for mark in self.detector.feed(data):
            await self.on_mark(mark)

    async def on_mark(self, mark: SpeechMark, *, from_finalize: bool = False) -> None:
        if mark.kind == "start":
            self.interims = 0
            self.rec["speech_started"].append(round(mark.start, 3))
            if self.vad_events:
                await self.send(
                    {"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(mark.start, 3)}
                )
        elif mark.kind == "interim":
            upcoming = self.state.peek_caller()
            if not self.interim_results or not upcoming:
                return
            self.interims += 1
            tokens = upcoming.split()
            partial = " ".join(tokens[: min(len(tokens), self.interims)])
            msg = results_message(
                self.request_id, partial, mark.start, mark.end, is_final=False, speech_final=False
            )
            self._log_transcript(msg)
            await self.send(msg)
        else:
            await self.final(mark, from_finalize=from_finalize)

    async def final(self, mark: SpeechMark, *, from_finalize: bool) -> None:
        transcript = self.state.take_caller() or ""
        delay = self.state.scenario.latency.stt_final_ms
        if delay:
            await asyncio.sleep(delay / 1000)
        msg = results_message(
            self.request_id,
            transcript,
            mark.start,
            mark.end,
            is_final=True,
            speech_final=True,
            from_finalize=from_finalize,
        )
        self._log_transcript(msg)
        logger.info("stt final: %r", transcript)
        await self.send(msg)
        self.rec["transcripts"][-1]["sent_at"] = time.time()  # epoch: when the final left
        await self.send(
            {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(mark.end, 3)}
        )

    async def finalize(self) -> None:
        mark = self.detector.finalize()
        if mark is not None:
            await self.final(mark, from_finalize=True)

    async def close_stream(self) -> None:
        await self.finalize()
        await self.send(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self.request_id,
                "sha256": "",
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "duration": self.rec["audio_seconds"],
                "channels": 1,
                "models": ["emulator"],
                "model_info": {"emulator": _MODEL_INFO},
            }
        )
        await self.ws.close(code=1000)


async def _listen_ws(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not _authorized(request):
        return web.json_response({"err_code": "INVALID_AUTH", "err_msg": "no key"}, status=401)
    query = _query(request)
    request_no = state.next_request_no("stt")
    fault = state.fault_for("stt", request_no)
    rec = state.new_record(
        "stt",
        "listen.ws",
        request_no=request_no,
        query=query,
        model=query.get("model"),
        language=query.get("language"),
        sample_rate=int(query.get("sample_rate", 16000)),
        encoding=query.get("encoding"),
        audio_seconds=0.0,
        speech_started=[],
        transcripts=[],
        control={"KeepAlive": 0, "Finalize": 0, "CloseStream": 0},
        fault=fault.kind if fault else None,
        closed_by=None,
    )
    logger.info("stt connection #%d query=%s fault=%s", request_no, query, rec["fault"])
    if fault and fault.kind in ("http_500", "http_429"):
        status = 500 if fault.kind == "http_500" else 429
        rec.update(status=status, closed_by="rejected")
        state.finish(rec)
        return web.json_response({"err_code": "EMULATED", "err_msg": fault.kind}, status=status)

    ws = web.WebSocketResponse()
    await ws.prepare(request)
    session = _LiveSession(state, ws, rec, query)
    try:
        await _serve(session, fault)
    finally:
        if rec["closed_by"] is None:
            rec["closed_by"] = "client"
        state.finish(rec)
    return ws


async def _serve(session: _LiveSession, fault: Fault | None) -> None:
    ws, rec = session.ws, session.rec
    stalled = fault is not None and fault.kind == "stall"
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            if stalled:
                session.audio_bytes += len(msg.data)
                rec["audio_seconds"] = round(session.audio_bytes / session.bytes_per_second, 3)
                continue
            await session.audio(msg.data)
            if (
                fault is not None
                and fault.kind == "drop"
                and rec["audio_seconds"] * 1000 >= fault.drop_after_ms
            ):
                logger.info("stt: dropping connection #%d", rec["request_no"])
                rec["closed_by"] = "fault_drop"
                await ws.close(code=1011, message=b"emulated drop")
                return
        elif msg.type == WSMsgType.TEXT:
            try:
                kind = json.loads(msg.data).get("type")
            except (json.JSONDecodeError, AttributeError):
                kind = None
            if kind in rec["control"]:
                rec["control"][kind] += 1
            if stalled:
                continue
            if kind == "Finalize":
                await session.finalize()
            elif kind == "CloseStream":
                rec["closed_by"] = "CloseStream"
                await session.close_stream()
                return
            elif kind != "KeepAlive":
                logger.warning("stt: unexpected text message %r", msg.data[:200])
        elif msg.type == WSMsgType.ERROR:
            return


def _wav_samples(body: bytes) -> tuple[np.ndarray, int]:
    """Samples and rate of a WAV body (raw 16 kHz int16 when it is not a WAV file)."""
    try:
        with wave.open(io.BytesIO(body)) as w:
            rate, channels = w.getframerate(), w.getnchannels()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
            if channels > 1:
                samples = samples[::channels]
            return samples, rate
    except (wave.Error, EOFError):
        return np.frombuffer(body[: len(body) // 2 * 2], dtype=np.int16), 16000


async def _listen_http(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not _authorized(request):
        return web.json_response({"err_code": "INVALID_AUTH", "err_msg": "no key"}, status=401)
    query = _query(request)
    request_no = state.next_request_no("stt")
    fault = state.fault_for("stt", request_no)
    body = await request.read()
    samples, rate = _wav_samples(body)
    duration = samples.size / rate if rate else 0.0
    rec = state.new_record(
        "stt",
        "listen.http",
        request_no=request_no,
        query=query,
        model=query.get("model"),
        language=query.get("language"),
        sample_rate=rate,
        audio_seconds=round(duration, 3),
        fault=fault.kind if fault else None,
    )
    try:
        if fault and fault.kind in ("http_500", "http_429"):
            rec["status"] = 500 if fault.kind == "http_500" else 429
            return web.json_response({"err_code": "EMULATED"}, status=rec["status"])
        if fault and fault.kind == "stall":
            await stall(request, fault.stall_ms)
        if fault and fault.kind == "drop" and request.transport is not None:
            rec["status"] = "dropped"
            request.transport.close()
            return web.Response(status=500)

        detector = EnergyDetector(rate, state.scenario.stt)
        marks = [m for m in detector.feed(samples.tobytes()) if m.kind != "interim"]
        if (last := detector.finalize()) is not None:
            marks.append(last)
        starts = [m.start for m in marks if m.kind == "start"]
        ends = [m.end for m in marks if m.kind == "end"]
        transcript = (state.take_caller() or "") if starts else ""
        start, end = (starts[0], ends[-1]) if starts and ends else (0.0, 0.0)
        rec.update(status=200, transcript=transcript)
        alt = {
            "transcript": transcript,
            "confidence": 0.99 if transcript else 0.0,
            "words": _words(transcript, start, end),
        }
        return web.json_response(
            {
                "metadata": {
                    "request_id": str(uuid.uuid4()),
                    "duration": round(duration, 3),
                    "channels": 1,
                    "models": ["emulator"],
                },
                "results": {"channels": [{"alternatives": [alt]}]},
            }
        )
    finally:
        state.finish(rec)
