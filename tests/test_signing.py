"""Event signing: HMAC-SHA256 over ``timestamp.body``, verification reasons, rotation."""

from __future__ import annotations

import hashlib
import hmac
import textwrap

import pytest

from convoi.reporting.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    sign,
    signature_headers,
    verify,
)

SECRET = "whsec_test_secret"
BODY = b'{"id":"evt_1","call_id":"call_1","sequence":1}'
NOW = 1_750_000_000.0


def reason(exc: pytest.ExceptionInfo[SignatureError]) -> str:
    return exc.value.reason


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1750000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_750_000_000, BODY) == expected
    assert sign(SECRET.encode(), 1_750_000_000, BODY.decode()) == expected


def test_headers_round_trip() -> None:
    headers = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    assert headers[TIMESTAMP_HEADER] == "1750000000"
    assert headers[SIGNATURE_HEADER] == f"v1={sign(SECRET, 1_750_000_000, BODY)}"
    assert headers[EVENT_ID_HEADER] == "evt_1"
    verify(SECRET, headers, BODY, now=NOW + 10)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in signature_headers(SECRET, BODY, "evt_1", now=NOW).items()}
    verify(SECRET, headers, BODY, now=NOW)  # raises SignatureError unless accepted
    with pytest.raises(SignatureError) as exc:  # the lower-case headers are read, not missing
        verify(SECRET, headers, BODY + b" ", now=NOW)
    assert reason(exc) == "mismatch"


@pytest.mark.parametrize("missing", [TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_missing_header(missing: str) -> None:
    headers = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    del headers[missing]
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=NOW)
    assert reason(exc) == "missing_header"
    assert missing in str(exc.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (TIMESTAMP_HEADER, "yesterday"),
        (TIMESTAMP_HEADER, "-1750000000"),
        (TIMESTAMP_HEADER, "1750000000.5"),
        (TIMESTAMP_HEADER, "²"),
        (SIGNATURE_HEADER, "deadbeef"),
        (SIGNATURE_HEADER, "v0=" + "a" * 64),
        (SIGNATURE_HEADER, "v1=" + "g" * 64),
        (SIGNATURE_HEADER, "v1=" + "a" * 63),
    ],
)
def test_bad_format(name: str, value: str) -> None:
    headers = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    headers[name] = value
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=NOW)
    assert reason(exc) == "bad_format"


def test_wrong_secret_is_a_mismatch() -> None:
    headers = signature_headers("another-secret", BODY, "evt_1", now=NOW)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=NOW)
    assert reason(exc) == "mismatch"


def test_tampered_body_is_a_mismatch() -> None:
    headers = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY.replace(b"call_1", b"call_2"), now=NOW)
    assert reason(exc) == "mismatch"


def test_tampered_timestamp_is_a_mismatch() -> None:
    headers = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    headers[TIMESTAMP_HEADER] = str(int(NOW) + 1)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=NOW)
    assert reason(exc) == "mismatch"


def test_stale_and_future_timestamps() -> None:
    headers = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    verify(SECRET, headers, BODY, now=NOW + 300)  # exactly at the tolerance: accepted
    verify(SECRET, headers, BODY, now=NOW - 300)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=NOW + 301)
    assert reason(exc) == "stale_timestamp"
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=NOW - 301)
    assert reason(exc) == "future_timestamp"
    verify(SECRET, headers, BODY, now=NOW + 3000, tolerance=3600)


def test_rotation_accepts_any_listed_secret() -> None:
    old = signature_headers("old-secret", BODY, "evt_1", now=NOW)
    new = signature_headers("new-secret", BODY, "evt_1", now=NOW)
    verify(["new-secret", "old-secret"], old, BODY, now=NOW)
    verify(["new-secret", "old-secret"], new, BODY, now=NOW)
    with pytest.raises(SignatureError) as exc:
        verify(["new-secret"], old, BODY, now=NOW)
    assert reason(exc) == "mismatch"


def test_several_signatures_in_one_header() -> None:
    """A sender mid-rotation may sign with both secrets: ``v1=<old>,v1=<new>``."""
    old = sign("old-secret", int(NOW), BODY)
    new = sign("new-secret", int(NOW), BODY)
    headers = {TIMESTAMP_HEADER: str(int(NOW)), SIGNATURE_HEADER: f"v1={old}, v1={new}"}
    verify("new-secret", headers, BODY, now=NOW)  # each raises SignatureError unless accepted
    verify("old-secret", headers, BODY, now=NOW)
    with pytest.raises(SignatureError) as exc:  # a third secret matches neither signature
        verify("other-secret", headers, BODY, now=NOW)
    assert reason(exc) == "mismatch"


def test_empty_secrets_are_refused() -> None:
    headers = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    with pytest.raises(ValueError):
        verify([], headers, BODY, now=NOW)
    with pytest.raises(ValueError):
        sign("", 1, BODY)


def test_error_messages_do_not_leak_the_secret_or_signature() -> None:
    headers = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    with pytest.raises(SignatureError) as exc:
        verify("other", headers, BODY, now=NOW)
    assert SECRET not in str(exc.value)
    assert sign(SECRET, int(NOW), BODY) not in str(exc.value)


def test_module_docstring_recipe_works() -> None:
    """The recipe in the module docstring (copied into the README) verifies real headers."""
    import convoi.reporting.signing as signing

    doc = signing.__doc__ or ""
    recipe = doc.split("Verification recipe (standard library only)::", 1)[1].split("\n\n")[1:3]
    code = "\n\n".join(recipe)
    namespace: dict[str, object] = {}
    exec(textwrap.dedent(code), namespace)
    recipe_verify = namespace["verify"]
    headers = signature_headers(SECRET, BODY, "evt_1")
    assert recipe_verify(SECRET.encode(), headers, BODY) is True  # type: ignore[operator]
    assert recipe_verify(b"other", headers, BODY) is False  # type: ignore[operator]
    stale = signature_headers(SECRET, BODY, "evt_1", now=NOW)
    assert recipe_verify(SECRET.encode(), stale, BODY) is False  # type: ignore[operator]
