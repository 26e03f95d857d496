"""ElevenLabs text-to-speech emulator (``/elevenlabs/v1``).

WebSocket ``/text-to-speech/{voice_id}/multi-stream-input`` (header ``xi-api-key``
required): text accumulates per ``context_id``; ``flush: true`` (or a sentence end in the
pending text) renders it and sends ``{"audio": <b64>, "contextId": id}`` messages of about
100 ms, the first one of each rendered piece carrying ``normalizedAlignment``/``alignment``
(times from the context start) when ``sync_alignment=true``. ``close_context`` renders the
rest, ends the MP3 stream and sends ``{"isFinal": true, "contextId": id}``. The socket stays
open between contexts; ``close_socket`` closes it.

HTTP ``POST /text-to-speech/{voice_id}[/stream]`` returns the whole audio as an ``audio/*``
body. ``GET /voices`` lists one voice.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .common import scrub, stall
from .scenario import Fault
from .state import STATE_KEY, EmulatorState, Record
from .tts_audio import AudioFormat, ChunkEncoder, make_encoder, parse_output_format, render

__all__ = ["add_routes", "alignment_for"]

logger = logging.getLogger("convoi.devstack.emulators.tts")

_CHUNK_S = 0.1
_SENTENCE_END = re.compile(r"[.!?;:]\s")
_conn_ids = itertools.count(1)


def add_routes(app: web.Application, prefix: str = "/elevenlabs/v1") -> None:
    """Register the ElevenLabs routes under ``prefix``."""
    app.router.add_get(f"{prefix}/text-to-speech/{{voice_id}}/multi-stream-input", _multi_ws)
    app.router.add_post(f"{prefix}/text-to-speech/{{voice_id}}/stream", _http_tts)
    app.router.add_post(f"{prefix}/text-to-speech/{{voice_id}}", _http_tts)
    app.router.add_get(f"{prefix}/voices", _voices)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"detail": {"status": "error", "message": message}}, status=status)


def _authorized(request: web.Request) -> bool:
    return bool(request.headers.get("xi-api-key", "").strip())


def alignment_for(text: str, offset_ms: float, duration_ms: float) -> dict[str, list]:
    """Character alignment spreading ``duration_ms`` evenly over ``text`` plus a space."""
    chars = list(text.strip() + " ")
    per = duration_ms / len(chars)
    return {
        "chars": chars,
        "charStartTimesMs": [round(offset_ms + i * per) for i in range(len(chars))],
        "charDurationsMs": [round(per)] * len(chars),
    }


async def _voices(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "missing xi-api-key")
    voice = {"voice_id": "voice_x", "name": "Emulated", "category": "premade"}
    return web.json_response({"voices": [voice]})


@dataclass
class _Context:
    id: str
    rec: Record
    encoder: ChunkEncoder
    fault: Fault | None
    pending: str = ""
    full_text: list[str] = field(default_factory=list)
    rendered_ms: float = 0.0
    audio_bytes: int = 0
    failed: bool = False

    @property
    def stalled(self) -> bool:
        return self.fault is not None and self.fault.kind == "stall"


class _TtsSocket:
    """One multi-stream-input WebSocket and its contexts."""

    def __init__(
        self,
        state: EmulatorState,
        ws: web.WebSocketResponse,
        voice_id: str,
        query: dict[str, str],
        fmt: AudioFormat,
    ) -> None:
        self.state = state
        self.ws = ws
        self.voice_id = voice_id
        self.query = query
        self.fmt = fmt
        self.conn_id = next(_conn_ids)
        self.sync_alignment = query.get("sync_alignment", "false") == "true"
        self.contexts: dict[str, _Context] = {}

    def _open_context(self, cid: str) -> _Context:
        request_no = self.state.next_request_no("tts")
        fault = self.state.fault_for("tts", request_no)
        rec = self.state.new_record(
            "tts",
            "ws.context",
            request_no=request_no,
            connection=self.conn_id,
            context_id=cid,
            voice_id=self.voice_id,
            model_id=self.query.get("model_id"),
            output_format=self.query.get("output_format", "mp3_44100_128"),
            query=self.query,
            voice_settings=None,
            generation_config=None,
            text="",
            segments=[],
            characters=0,
            audio_seconds=0.0,
            first_text_time=None,
            first_audio_time=None,
            is_final_sent=False,
            fault=fault.kind if fault else None,
            closed_by=None,
        )
        ctx = _Context(cid, rec, make_encoder(self.fmt), fault)
        self.contexts[cid] = ctx
        logger.info("tts context %s (#%d) fault=%s", cid, request_no, rec["fault"])
        return ctx

    async def _send(self, msg: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(msg))

    async def _send_audio(self, ctx: _Context, data: bytes, alignment: dict | None) -> None:
        msg: dict[str, Any] = {"audio": base64.b64encode(data).decode() if data else None}
        if alignment is not None:
            msg["normalizedAlignment"] = alignment
            msg["alignment"] = alignment
        msg["contextId"] = ctx.id
        if data and ctx.rec["first_audio_time"] is None:
            ctx.rec["first_audio_time"] = time.time()
        ctx.audio_bytes += len(data)
        await self._send(msg)
        if data and ctx.fault is not None and ctx.fault.kind == "drop":
            logger.info("tts: dropping socket in context %s", ctx.id)
            ctx.rec["closed_by"] = "fault_drop"
            await self.ws.close(code=1011, message=b"emulated drop")

    async def _speak(self, ctx: _Context, text: str) -> None:
        """Render ``text`` and stream it to the context in ~100 ms messages."""
        text = text.strip()
        if not text or ctx.failed or ctx.stalled or self.ws.closed:
            return
        ctx.rec["segments"].append(text)
        ctx.rec["characters"] += len(text)
        rate = self.fmt.sample_rate
        samples = await asyncio.to_thread(render, text, rate, self.state.scenario.tts)
        duration_ms = samples.size / rate * 1000
        alignment = (
            alignment_for(text, ctx.rendered_ms, duration_ms) if self.sync_alignment else None
        )
        ctx.rendered_ms += duration_ms
        ctx.rec["audio_seconds"] = round(ctx.rendered_ms / 1000, 3)
        ttfb = self.state.scenario.latency.tts_ttfb_ms
        if ttfb and ctx.rec["first_audio_time"] is None:
            await asyncio.sleep(ttfb / 1000)
        step = max(1, int(rate * _CHUNK_S))
        for i in range(0, samples.size, step):
            data = ctx.encoder.encode(samples[i : i + step])
            if data:
                await self._send_audio(ctx, data, alignment)
                alignment = None
            if self.ws.closed:
                return
        if alignment is not None:
            await self._send_audio(ctx, b"", alignment)

    async def _close_context(self, ctx: _Context) -> None:
        await self._speak(ctx, ctx.pending)
        ctx.pending = ""
        if ctx.failed or ctx.stalled or self.ws.closed:
            return
        tail = ctx.encoder.flush()
        if tail:
            await self._send_audio(ctx, tail, None)
        await self._send({"isFinal": True, "contextId": ctx.id})
        ctx.rec["is_final_sent"] = True
        ctx.rec["closed_by"] = "close_context"
        self.contexts.pop(ctx.id, None)
        self.state.finish(ctx.rec)

    def _add_text(self, ctx: _Context, text: str) -> None:
        ctx.pending += text
        ctx.full_text.append(text)
        ctx.rec["text"] = " ".join("".join(ctx.full_text).split())
        if text.strip() and ctx.rec["first_text_time"] is None:
            ctx.rec["first_text_time"] = time.time()

    async def on_message(self, msg: dict[str, Any]) -> None:
        """Handle one client message."""
        if msg.get("close_socket"):
            for open_ctx in list(self.contexts.values()):
                await self._close_context(open_ctx)
            await self.ws.close()
            return
        cid = str(msg.get("context_id") or msg.get("contextId") or "default")
        ctx = self.contexts.get(cid)
        if ctx is None:
            if msg.get("close_context"):
                return
            ctx = self._open_context(cid)
            if ctx.fault is not None and ctx.fault.kind in ("http_500", "http_429"):
                ctx.failed = True
                code = 500 if ctx.fault.kind == "http_500" else 429
                await self._send(
                    {"error": f"emulated {code}", "message": ctx.fault.kind, "contextId": cid}
                )
                ctx.rec["closed_by"] = "fault_error"
                self.state.finish(ctx.rec)
        for key in ("voice_settings", "generation_config", "pronunciation_dictionary_locators"):
            if key in msg:
                ctx.rec[key] = msg[key]
        if isinstance(msg.get("text"), str):
            self._add_text(ctx, msg["text"])
        if msg.get("flush") or msg.get("close_context"):
            text, ctx.pending = ctx.pending, ""
            await self._speak(ctx, text)
        elif m := list(_SENTENCE_END.finditer(ctx.pending)):
            cut = m[-1].end()
            text, ctx.pending = ctx.pending[:cut], ctx.pending[cut:]
            await self._speak(ctx, text)
        if msg.get("close_context"):
            await self._close_context(ctx)

    def finish_all(self) -> None:
        """The socket is gone: close the records of every open context."""
        for ctx in self.contexts.values():
            ctx.rec["closed_by"] = ctx.rec["closed_by"] or "client"
            self.state.finish(ctx.rec)
        self.contexts.clear()


async def _multi_ws(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not _authorized(request):
        return _error(401, "missing xi-api-key")
    query = scrub(request.query)
    try:
        fmt = parse_output_format(query.get("output_format", "mp3_44100_128"))
    except ValueError as e:
        return _error(400, str(e))
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sock = _TtsSocket(state, ws, request.match_info["voice_id"], query, fmt)
    logger.info("tts socket %d voice=%s query=%s", sock.conn_id, sock.voice_id, query)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    logger.warning("tts: non-JSON message ignored")
                    continue
                if isinstance(data, dict):
                    await sock.on_message(data)
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        sock.finish_all()
    return ws


async def _http_tts(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not _authorized(request):
        return _error(401, "missing xi-api-key")
    output_format = request.query.get("output_format", "mp3_44100_128")
    try:
        fmt = parse_output_format(output_format)
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as e:
        return _error(400, str(e))
    text = str(body.get("text") or "")
    request_no = state.next_request_no("tts")
    fault = state.fault_for("tts", request_no)
    rec = state.new_record(
        "tts",
        "http",
        request_no=request_no,
        voice_id=request.match_info["voice_id"],
        model_id=body.get("model_id"),
        output_format=output_format,
        voice_settings=body.get("voice_settings"),
        text=" ".join(text.split()),
        characters=len(text.strip()),
        first_text_time=time.time(),
        first_audio_time=None,
        audio_seconds=0.0,
        fault=fault.kind if fault else None,
    )
    try:
        return await _http_respond(request, state, rec, fmt, text, fault)
    finally:
        state.finish(rec)


async def _http_respond(
    request: web.Request,
    state: EmulatorState,
    rec: Record,
    fmt: AudioFormat,
    text: str,
    fault: Fault | None,
) -> web.StreamResponse:
    if fault and fault.kind in ("http_500", "http_429"):
        rec["status"] = 500 if fault.kind == "http_500" else 429
        return _error(rec["status"], f"emulated {fault.kind}")
    if fault and fault.kind == "stall":
        await stall(request, fault.stall_ms)
        if fault.stall_ms is None:
            return web.Response(status=504)
    samples = await asyncio.to_thread(render, text, fmt.sample_rate, state.scenario.tts)
    rec["audio_seconds"] = round(samples.size / fmt.sample_rate, 3)
    if state.scenario.latency.tts_ttfb_ms:
        await asyncio.sleep(state.scenario.latency.tts_ttfb_ms / 1000)
    resp = web.StreamResponse(headers={"Content-Type": fmt.mime_type})
    await resp.prepare(request)
    encoder = make_encoder(fmt)
    step = max(1, int(fmt.sample_rate * _CHUNK_S))

    def chunks() -> Iterator[bytes]:
        for i in range(0, samples.size, step):
            yield encoder.encode(samples[i : i + step])
        yield encoder.flush()

    for data in chunks():
        if not data:
            continue
        if rec["first_audio_time"] is None:
            rec["first_audio_time"] = time.time()
        await resp.write(data)
        if fault and fault.kind == "drop" and request.transport is not None:
            rec["status"] = "dropped"
            request.transport.close()
            return resp
    await resp.write_eof()
    rec["status"] = 200
    return resp
