"""A tiny customer webhook server for tests: records every POST, answers as told.

::

    with WebhookReceiver() as receiver:
        ...  # register receiver.url as a webhook endpoint
        received = receiver.wait_for(lambda r: len(r) >= 3)

``port`` (default: a free one) lets a test bring a receiver up where one was down;
``fail_first`` answers the first N requests with 503; ``hold`` (a threading.Event) makes every
request wait until it is set (a slow endpoint) — ``holding`` counts the requests waiting.

``verify`` is the verification snippet of the docs, as a customer would paste it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Received", "WebhookReceiver", "verify"]


# --- the documented snippet (README "Webhooks"): keep it standard library only --------------
def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """True if ``body`` was signed by Convoi with the endpoint's ``secret`` (whsec_…)."""
    ts = headers.get("Convoi-Timestamp", "")
    if not (ts.isascii() and ts.isdigit()) or abs(time.time() - int(ts)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    given = [
        p.strip()[3:]
        for p in headers.get("Convoi-Signature", "").split(",")
        if p.strip().startswith("v1=")
    ]
    return any(hmac.compare_digest(expected, g) for g in given)


# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One POST the receiver got."""

    headers: dict[str, str]
    body: bytes
    answered: int
    path: str = "/hooks"

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class WebhookReceiver:
    """The server (127.0.0.1, a free port) and what it received."""

    def __init__(
        self, *, fail_first: int = 0, hold: threading.Event | None = None, port: int = 0
    ) -> None:
        self.fail_first = fail_first
        self.hold = hold
        self.holding = 0
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if receiver.hold is not None:
                    with receiver._changed:
                        receiver.holding += 1
                        receiver._changed.notify_all()
                    receiver.hold.wait(60)
                with receiver._changed:
                    status = 503 if receiver.fail_first > 0 else 200
                    receiver.fail_first -= 1
                    headers = {k: v for k, v in self.headers.items()}
                    receiver.requests.append(Received(headers, body, status, self.path))
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.hold is not None:
            self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._changed:
            return [r for r in self.requests if r.answered < 300]

    def wait_for(
        self, done: Callable[[list[Received]], bool], timeout: float = 60.0
    ) -> list[Received]:
        """Wait until ``done(delivered requests)``; the delivered requests (AssertionError late)."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: done([r for r in self.requests if r.answered < 300]), timeout
            )
            delivered = [r for r in self.requests if r.answered < 300]
        assert ok, f"webhooks not delivered in {timeout} s: got {[r.event for r in delivered]}"
        return delivered

    def wait_holding(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` requests are being held."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.holding >= count, timeout)
