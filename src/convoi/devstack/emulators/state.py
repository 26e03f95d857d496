"""Shared emulator state: the loaded scenario, its cursors, the request records."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from .scenario import Fault, Provider, Scenario

__all__ = ["STATE_KEY", "EmulatorState", "Record"]

logger = logging.getLogger("convoi.devstack.emulators")

Record = dict[str, Any]
"""One recorded request: a JSON-able dict, updated in place while a stream is running."""


class EmulatorState:
    """Everything the three emulators share.

    Records are plain dicts kept in arrival order. Streaming requests (WebSocket connections,
    TTS contexts) are appended when they start, updated while they run and marked
    ``"done": true`` when they end; only then are they appended to the JSONL record file.
    """

    def __init__(self, scenario: Scenario | None = None, record_file: Path | None = None) -> None:
        self.scenario: Scenario = scenario or Scenario()
        self.record_file = record_file
        self.records: list[Record] = []
        self._seq = 0
        self._file_lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._caller_cursor = 0
        self.rule_uses: dict[int, int] = {}

    # -- scenario ---------------------------------------------------------------------------

    def load(self, scenario: Scenario) -> None:
        """Replace the scenario and reset the cursors and records."""
        self.scenario = scenario
        self.reset()

    def reset(self) -> None:
        """Forget all records and restart every scenario cursor (the scenario itself stays)."""
        self.records = []
        self._seq = 0
        self._counters = {}
        self._caller_cursor = 0
        self.rule_uses = {}

    def next_request_no(self, provider: Provider) -> int:
        """Count one more request of ``provider`` and return its 1-based number."""
        self._counters[provider] = self._counters.get(provider, 0) + 1
        return self._counters[provider]

    def fault_for(self, provider: Provider, request_no: int) -> Fault | None:
        """The fault scripted for this request, if any."""
        for fault in self.scenario.faults:
            if fault.provider == provider and fault.on_request == request_no:
                return fault
        return None

    def peek_caller(self) -> str | None:
        """The caller utterance the next final transcript will carry (None when exhausted)."""
        lines = self.scenario.caller
        if self._caller_cursor < len(lines):
            return lines[self._caller_cursor]
        if self.scenario.caller_repeat and lines:
            return lines[self._caller_cursor % len(lines)]
        return None

    def take_caller(self) -> str | None:
        """Consume and return the next caller utterance (None when exhausted)."""
        text = self.peek_caller()
        if text is None:
            logger.warning("stt: scripted caller utterances exhausted")
        else:
            self._caller_cursor += 1
        return text

    # -- records ----------------------------------------------------------------------------

    def new_record(self, provider: Provider, kind: str, **fields: Any) -> Record:
        """Append a record (``done`` false) and return it for in-place updates."""
        self._seq += 1
        rec: Record = {
            "seq": self._seq,
            "provider": provider,
            "kind": kind,
            "time": time.time(),
            "done": False,
            **fields,
        }
        self.records.append(rec)
        return rec

    def finish(self, rec: Record) -> None:
        """Mark a record done and append it to the JSONL file, if one is configured."""
        if rec.get("done"):
            return
        rec["done"] = True
        rec["end_time"] = time.time()
        if self.record_file is None:
            return
        line = json.dumps(rec, default=str)
        with self._file_lock, self.record_file.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def select(self, provider: str | None = None) -> list[Record]:
        """Records in arrival order, optionally only one provider's."""
        return [r for r in self.records if provider is None or r["provider"] == provider]

    def usage(self) -> dict[str, Any]:
        """Billing-relevant totals over the current records."""
        llm = self.select("llm")
        stt = self.select("stt")
        tts = self.select("tts")
        return {
            "llm": {
                "requests": len(llm),
                "prompt_tokens": sum(r.get("usage", {}).get("prompt_tokens", 0) for r in llm),
                "completion_tokens": sum(
                    r.get("usage", {}).get("completion_tokens", 0) for r in llm
                ),
            },
            "stt": {
                "requests": len(stt),
                "audio_seconds": round(sum(r.get("audio_seconds", 0.0) for r in stt), 3),
            },
            "tts": {
                "requests": len(tts),
                "characters": sum(r.get("characters", 0) for r in tts),
            },
        }


STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)
"""Where the :class:`EmulatorState` lives on the aiohttp application."""
