"""Domain errors of the control plane. The API maps each class to one HTTP status, in one place
(:mod:`convoi.controlplane.api.errors`); nothing below knows about HTTP.

::

    ControlPlaneError            code, message, field (dotted path or header name, may be None)
    ├── AuthenticationFailed     401  no, malformed, unknown or revoked API key
    ├── PermissionDenied         403  the key's kind may not do this (pk_live_ and phone calls)
    ├── NotFound                 404  no such call on this account
    ├── InvalidRequest           422  the body breaks a rule (names the field)
    ├── IdempotencyKeyReused     422  same Idempotency-Key, different body
    ├── IdempotencyKeyInUse      409  same Idempotency-Key, first request still running
    ├── Conflict                 409  the object's state forbids it (``call_already_ended``,
    │                                 an agent a squad still uses…)
    ├── PayloadTooLarge          413  request body over the limit
    ├── UnsupportedMediaType     415  the body is not declared as application/json
    ├── TooManyRequests          429  ``rate_limited`` / ``concurrency_limit`` (Retry-After)
    ├── ServiceUnavailable       503  the API is saturated (database pool, requests in flight)
    └── LiveKitFailure           LiveKit could not create the room or dispatch the worker
        ├── LiveKitRejected      502  LiveKit answered with an error
        └── LiveKitUnavailable   503  LiveKit unreachable, timed out or answered 5xx
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "ControlPlaneError",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "LiveKitFailure",
    "LiveKitRejected",
    "LiveKitUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ServiceUnavailable",
    "TooManyRequests",
    "UnsupportedMediaType",
]


class ControlPlaneError(Exception):
    """Base class: a machine-readable ``code``, a human ``message`` and the ``field`` at fault."""

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or self.default_code
        self.retry_after = retry_after
        """Seconds after which a retry may succeed (the ``Retry-After`` header), if known."""


class AuthenticationFailed(ControlPlaneError):
    """No usable API key."""

    default_code = "invalid_api_key"


class PermissionDenied(ControlPlaneError):
    """The API key is valid but may not do this."""

    default_code = "permission_denied"


class NotFound(ControlPlaneError):
    """The object does not exist for this account."""

    default_code = "not_found"


class InvalidRequest(ControlPlaneError):
    """The request breaks a validation rule."""

    default_code = "invalid_request"


class IdempotencyKeyReused(ControlPlaneError):
    """The Idempotency-Key was used before with a different request body."""

    default_code = "idempotency_key_reused"


class IdempotencyKeyInUse(ControlPlaneError):
    """A request with the same Idempotency-Key is still being processed."""

    default_code = "idempotency_key_in_use"


class PayloadTooLarge(ControlPlaneError):
    """The request body is larger than accepted."""

    default_code = "payload_too_large"


class UnsupportedMediaType(ControlPlaneError):
    """The body's Content-Type is not JSON."""

    default_code = "unsupported_media_type"


class TooManyRequests(ControlPlaneError):
    """A rate or concurrency limit: ``rate_limited`` or ``concurrency_limit``."""

    default_code = "rate_limited"


class ServiceUnavailable(ControlPlaneError):
    """The API is saturated for the moment (database pool exhausted, too many requests)."""

    default_code = "overloaded"


class LiveKitFailure(ControlPlaneError):
    """LiveKit could not create the room, mint the token or dispatch the worker."""

    default_code = "livekit_error"


class LiveKitRejected(LiveKitFailure):
    """LiveKit answered the request with an error (bad credentials, invalid request…)."""

    default_code = "livekit_error"


class LiveKitUnavailable(LiveKitFailure):
    """LiveKit could not be reached, timed out or answered with a server error."""

    default_code = "livekit_unavailable"


class Conflict(ControlPlaneError):
    """The object's state, or another object's, forbids the request (ending a call that has
    ended; deleting an agent a squad uses)."""

    default_code = "conflict"
