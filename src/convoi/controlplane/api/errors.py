"""The one place domain errors become HTTP answers.

Every 4xx/5xx body is ``{"error": {"code": "...", "message": "...", "field": "..."}}``: the
control plane's own errors (status per class below), FastAPI's request validation errors (422,
the field as a dotted path or the header name) and Starlette's (404 unknown path, 405 method).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from convoi.controlplane import errors as e
from convoi.controlplane.log import logger
from convoi.validation import field_path

__all__ = [
    "STATUS_BY_ERROR",
    "database_busy",
    "domain_error_response",
    "error_response",
    "install_error_handlers",
    "status_for",
]

STATUS_BY_ERROR: dict[type[e.ControlPlaneError], int] = {
    e.AuthenticationFailed: 401,
    e.PermissionDenied: 403,
    e.NotFound: 404,
    e.IdempotencyKeyInUse: 409,
    e.Conflict: 409,
    e.PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.TooManyRequests: 429,
    e.ServiceUnavailable: 503,
    e.InvalidRequest: 422,
    e.IdempotencyKeyReused: 422,
    e.LiveKitRejected: 502,
    e.LiveKitUnavailable: 503,
    e.Conflict: 409,
}
_HTTP_CODES = {
    400: "invalid_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}
_SOURCES = ("body", "query", "path", "header", "cookie")


def status_for(exc: e.ControlPlaneError) -> int:
    """The HTTP status of a domain error (500 for an unmapped class)."""
    return next((STATUS_BY_ERROR[c] for c in type(exc).__mro__ if c in STATUS_BY_ERROR), 500)


def error_response(
    status: int, code: str, message: str, field: str | None = None, **headers: str
) -> JSONResponse:
    """The JSON error body."""
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _validation_issue(error: dict[str, Any]) -> tuple[str | None, str, str]:
    """(field, problem, code) of one FastAPI/pydantic error."""
    loc = tuple(error.get("loc", ()))
    source = loc[0] if loc and loc[0] in _SOURCES else None
    rest = loc[1:] if source else loc
    kind = str(error.get("type", ""))
    if kind == "json_invalid":
        return (
            None,
            f"the body is not valid JSON ({error.get('ctx', {}).get('error', '')}); send a "
            "JSON object with 'Content-Type: application/json'",
            ("invalid_json"),
        )
    field = str(rest[0]) if source in ("header", "query", "path", "cookie") and rest else None
    if field is None:
        field = field_path(tuple(p for p in rest if isinstance(p, int | str))) or None
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if kind == "missing":
        message = "required"
    elif kind == "extra_forbidden":
        message = "unknown key"
    return field, message, "invalid_request"


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.ControlPlaneError)
    return domain_error_response(exc)


def domain_error_response(exc: e.ControlPlaneError) -> JSONResponse:
    """The answer to a domain error (with ``WWW-Authenticate`` / ``Retry-After`` if they apply)."""
    status = status_for(exc)
    headers = (
        {"WWW-Authenticate": "Bearer"} if status == 401 and exc.field == "Authorization" else {}
    )
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, exc.retry_after))
    return error_response(status, exc.code, exc.message, exc.field, **headers)


def database_busy() -> e.ServiceUnavailable:
    """503 ``database_busy``: no connection free in time, or the database locked/unreachable."""
    return e.ServiceUnavailable(
        "the database is saturated; retry shortly", code="database_busy", retry_after=1
    )


async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("database saturated on %s: %s", request.url.path, type(exc).__name__)
    return domain_error_response(database_busy())


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = [_validation_issue(err) for err in exc.errors()] or [(None, "invalid request", "")]
    field, _, code = issues[0]
    message = "; ".join(f"{f}: {m}" if f else m for f, m, _ in issues[:5])
    return error_response(422, code or "invalid_request", message, field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    return error_response(exc.status_code, code, str(exc.detail), None, **headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the request was logged")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(e.ControlPlaneError, _domain_error)
    app.add_exception_handler(sa_exc.TimeoutError, _database_busy)  # pool exhausted
    app.add_exception_handler(sa_exc.OperationalError, _database_busy)  # locked, unreachable
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
