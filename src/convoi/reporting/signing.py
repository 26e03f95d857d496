"""Signing of call events (worker → control plane), HMAC-SHA256 over ``timestamp.body``.

Every event POST carries three headers:

- ``Convoi-Timestamp``: unix time in whole seconds when the request was signed;
- ``Convoi-Signature``: ``v1=<hex>``, the lowercase hex HMAC-SHA256 of ``f"{timestamp}.{body}"``
  keyed with the shared secret (``CONVOI_EVENTS_SECRET``), where ``body`` is the exact bytes of
  the request body (verify the raw bytes *before* parsing the JSON);
- ``Convoi-Event-Id``: the event's ``id`` (informational, not signed: the signed body holds it too).

Rule: recompute the HMAC over ``timestamp + "." + raw body`` with each secret you currently
accept, compare it in constant time with every ``v1=`` value of ``Convoi-Signature`` (several
may be given, comma separated), and reject the request unless one matches and the timestamp is
within 5 minutes (300 s) of your clock, in either direction. The receiver de-duplicates by the
event ``id``, so a replay inside the window changes nothing. Rotate by accepting the old and the
new secret for a while (``verify`` takes a list), then switch the sender, then drop the old one.

Verification recipe (standard library only)::

    import hashlib, hmac, time

    def verify(secret: bytes, headers, body: bytes, tolerance: int = 300) -> bool:
        ts = headers.get("Convoi-Timestamp", "")
        if not (ts.isascii() and ts.isdigit()) or abs(time.time() - int(ts)) > tolerance:
            return False
        expected = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        given = [p.strip()[3:] for p in headers.get("Convoi-Signature", "").split(",")
                 if p.strip().startswith("v1=")]
        return any(hmac.compare_digest(expected, g) for g in given)

Or use :func:`verify` from this module, which raises :class:`SignatureError` whose ``reason`` is
one of ``missing_header``, ``bad_format``, ``stale_timestamp``, ``future_timestamp``, ``mismatch``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = [
    "DEFAULT_TOLERANCE",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_SCHEME",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "SignatureFailure",
    "sign",
    "signature_headers",
    "verify",
]

TIMESTAMP_HEADER = "Convoi-Timestamp"
SIGNATURE_HEADER = "Convoi-Signature"
EVENT_ID_HEADER = "Convoi-Event-Id"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE = 300
"""Seconds a signature stays acceptable, in either direction (clock skew)."""

SignatureFailure = Literal[
    "missing_header", "bad_format", "stale_timestamp", "future_timestamp", "mismatch"
]
Secret = str | bytes

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_TIMESTAMP_DIGITS = 12


class SignatureError(ValueError):
    """A request's signature is not acceptable; ``reason`` says why (never contains secrets)."""

    def __init__(self, reason: SignatureFailure, message: str) -> None:
        super().__init__(message)
        self.reason: SignatureFailure = reason
        self.message = message


def _key(secret: Secret) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("the events secret must not be empty")
    return key


def _bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def sign(secret: Secret, timestamp: int, body: bytes | str) -> str:
    """Lowercase hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with ``secret``."""
    message = str(int(timestamp)).encode("ascii") + b"." + _bytes(body)
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def signature_headers(
    secret: Secret, body: bytes | str, event_id: str, now: float | None = None
) -> dict[str, str]:
    """The three headers to send with ``body`` (signed at ``now``, default: the current time)."""
    timestamp = int(time.time() if now is None else now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SIGNATURE_SCHEME}={sign(secret, timestamp, body)}",
        EVENT_ID_HEADER: event_id,
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # plain dicts are case-sensitive; HTTP header names are not
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if value is None or not value.strip():
        raise SignatureError("missing_header", f"missing {name} header")
    return value.strip()


def verify(
    secret: Secret | Sequence[Secret],
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Check the signature headers of ``body``; raise :class:`SignatureError` if unacceptable.

    ``secret`` may be a list of secrets (rotation): the request is accepted if any of them signed
    it. ``headers`` is any mapping (names matched case-insensitively). ``body`` must be the raw
    bytes received.
    """
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets:
        raise ValueError("no events secret to verify with")
    keys = [_key(s) for s in secrets]

    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    raw_signature = _header(headers, SIGNATURE_HEADER)
    if not (raw_timestamp.isascii() and raw_timestamp.isdigit()) or len(raw_timestamp) > (
        _MAX_TIMESTAMP_DIGITS
    ):
        raise SignatureError("bad_format", f"{TIMESTAMP_HEADER} must be unix seconds")
    given: list[str] = []
    for part in raw_signature.split(","):
        scheme, sep, value = part.strip().partition("=")
        if sep and scheme == SIGNATURE_SCHEME and _HEX64.fullmatch(value.lower()):
            given.append(value.lower())
    if not given:
        raise SignatureError(
            "bad_format", f"{SIGNATURE_HEADER} must be {SIGNATURE_SCHEME}=<64 hex digits>"
        )

    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if current - timestamp > tolerance:
        raise SignatureError("stale_timestamp", f"timestamp older than {tolerance} s")
    if timestamp - current > tolerance:
        raise SignatureError("future_timestamp", f"timestamp more than {tolerance} s ahead")

    message = raw_timestamp.encode("ascii") + b"." + _bytes(body)
    matched = False
    for key in keys:  # no early exit: the time taken does not reveal which secret matched
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        for candidate in given:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("mismatch", "signature does not match")
