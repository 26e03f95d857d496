"""Cheap rejections first: an ASGI middleware in front of the Calls API and the event ingest.

For ``/api/v1/public/calls…``, in this order, before the body is read:

1. more than ``CONVOI_API_MAX_IN_FLIGHT`` public requests in progress → 503 ``overloaded``
   (``Retry-After``) at once;
2. the API key (401; looked up in the database, then remembered for :data:`KEY_CACHE_SECONDS`);
3. the key's rate limit (429 ``rate_limited``, ``Retry-After``; in Redis when configured);
4. for a POST: ``Content-Type`` other than JSON → 415 ``unsupported_media_type`` naming
   ``application/json``; a ``Content-Length`` over the limit → 413 at once; then the body is read
   while counting and refused with 413 as soon as it passes the limit (never buffered beyond it).

For ``/internal/v1/calls/{id}/events``: missing signature headers → 401 before the body is read,
and the same streaming limit (16 MiB). The principal is left in the request's state for
:func:`convoi.controlplane.api.deps.get_principal`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import anyio
from sqlalchemy import exc as sa_exc
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from convoi.controlplane.api.errors import database_busy, domain_error_response
from convoi.controlplane.api.state import ControlPlaneState
from convoi.controlplane.errors import (
    AuthenticationFailed,
    ControlPlaneError,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from convoi.controlplane.keys import Principal, authenticate
from convoi.reporting.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER

__all__ = [
    "KEY_CACHE_SECONDS",
    "MAX_CALL_BODY_BYTES",
    "MAX_EVENT_BODY_BYTES",
    "PRINCIPAL_STATE_KEY",
    "RequestGuard",
    "read_limited",
]

MAX_CALL_BODY_BYTES = 1024 * 1024
MAX_EVENT_BODY_BYTES = 16 * 1024 * 1024
"""``call.ended`` carries the whole transcript."""
KEY_CACHE_SECONDS = 5.0
"""A known key is not looked up again for this long (so a revocation takes effect within it)."""
PRINCIPAL_STATE_KEY = "convoi_principal"
_CALLS_PATH = re.compile(r"^/api/v1/public/calls(/[^/]+)?/?$")
_EVENTS_PATH = re.compile(r"^/internal/v1/calls/[^/]+/events/?$")
_MORE_PUBLIC_PATH = re.compile(r"^/api/v1/public/(calls/[^/]+/(end|events)|webhooks(/[^/]+)?)/?$")
"""Ending a call, its webhook deliveries and the webhooks API: guarded like the calls."""
_DEFINITIONS_PATH = re.compile(
    r"^/api/v1/public/(agents|squads|phone-numbers|knowledge-bases)(/[^/]+)?/?$"
)
"""The definitions API (:mod:`convoi.controlplane.api.routes.definitions`): guarded as calls."""
_AUTH_THREADS = 8
_Check = Callable[[Scope, Receive], Awaitable[Receive]]


async def read_limited(scope: Scope, receive: Receive, limit: int) -> Receive:
    """Read the body (413 past ``limit``, at once if Content-Length says so); a replaying receive."""
    length = Headers(scope=scope).get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes (Content-Length {length})")
    chunks: list[bytes] = []
    total = 0
    last: Message = {"type": "http.request", "body": b"", "more_body": False}
    while True:
        message = await receive()
        if message["type"] != "http.request":
            last = message  # the client went away: the app sees the disconnect
            break
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            if last["type"] == "http.request":
                return {"type": "http.request", "body": body, "more_body": False}
            return last
        return await receive()

    return replay


def _check_json_content_type(scope: Scope) -> None:
    value = Headers(scope=scope).get("content-type")
    if value is None:
        return  # read as JSON, as FastAPI does
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as JSON with 'Content-Type: application/json' (got {media!r})",
            field="Content-Type",
        )


class RequestGuard:
    """The middleware (see the module doc); ``state`` holds the settings, database and limits."""

    def __init__(self, app: ASGIApp, state: ControlPlaneState) -> None:
        self.app = app
        self.state = state
        self._in_flight = 0
        self._keys: dict[str, tuple[float, Principal]] = {}
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Guard the public calls and the event ingest; pass everything else through."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if (
            _CALLS_PATH.match(path)
            or _MORE_PUBLIC_PATH.match(path)
            or _DEFINITIONS_PATH.match(path)
        ):
            await self._public(scope, receive, send)
        elif _EVENTS_PATH.match(path):
            await self._guarded(scope, receive, send, self._check_event)
        else:
            await self.app(scope, receive, send)

    async def _public(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._in_flight >= self.state.settings.max_in_flight:
            error = ServiceUnavailable(
                "too many requests in progress; retry shortly", code="overloaded", retry_after=1
            )
            await domain_error_response(error)(scope, receive, send)
            return
        self._in_flight += 1
        try:
            await self._guarded(scope, receive, send, self._check_public)
        finally:
            self._in_flight -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, check: _Check) -> None:
        try:
            receive = await check(scope, receive)
        except ControlPlaneError as error:
            await domain_error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check_public(self, scope: Scope, receive: Receive) -> Receive:
        settings = self.state.settings
        principal = await self._principal(Headers(scope=scope).get("authorization", ""))
        scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
        budget = (
            settings.rate_limit_sk_per_minute
            if principal.is_secret
            else settings.rate_limit_pk_per_minute
        )
        await self.state.rate_limiter.acquire(principal.key_id, budget)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive
        _check_json_content_type(scope)
        return await read_limited(scope, receive, MAX_CALL_BODY_BYTES)

    async def _check_event(self, scope: Scope, receive: Receive) -> Receive:
        headers = Headers(scope=scope)
        for header in (SIGNATURE_HEADER, TIMESTAMP_HEADER):
            if not headers.get(header):
                raise AuthenticationFailed(
                    f"invalid signature (missing): no {header} header",
                    field=header,
                    code="invalid_signature",
                )
        return await read_limited(scope, receive, MAX_EVENT_BODY_BYTES)

    async def _principal(self, authorization: str) -> Principal:
        now = time.monotonic()
        cached = self._keys.get(authorization)
        if cached is not None and cached[0] > now:
            return cached[1]
        scheme, _, credentials = authorization.strip().partition(" ")
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(_AUTH_THREADS)
        try:
            principal = await anyio.to_thread.run_sync(
                self._authenticate, scheme, credentials.strip(), limiter=self._limiter
            )
        except (sa_exc.TimeoutError, sa_exc.OperationalError):
            raise database_busy() from None
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[authorization] = (now + KEY_CACHE_SECONDS, principal)
        return principal

    def _authenticate(self, scheme: str, credentials: str) -> Principal:
        with self.state.database.session() as session:
            return authenticate(session, scheme, credentials)
