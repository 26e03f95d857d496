"""Cheap rejections and limits of the Calls API, in process (TestClient, fake LiveKit).

The key is checked before the body (malformed JSON without a key is 401), a non-JSON
Content-Type is 415 naming application/json, a declared oversized body is 413, the event ingest
refuses unsigned posts before reading them; per-key rate limits (tight for pk_live_) and the
per-account concurrent-call limit answer 429 with Retry-After; a saturated database pool answers
503 with Retry-After within the pool timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from convoi.controlplane import create_app
from convoi.controlplane.errors import TooManyRequests
from convoi.controlplane.keys import create_key
from convoi.controlplane.limits import RateLimiter
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from tests.fixtures.seed_examples import WEB_MINIMAL
from tests.test_controlplane_api import (
    CALLS,
    Api,
    assert_error,
    make_settings,
)

WEB = {"type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx"}


def make_api(tmp_path: Path, **env: Any) -> Iterator[Api]:
    gateway = FakeLiveKitGateway()
    app = create_app(make_settings(tmp_path, **env), gateway)
    with TestClient(app) as client:
        with app.state.convoi.database.session() as session:
            keys = {
                "sk": create_key(session, "acct_demo", "sk_live"),
                "pk": create_key(session, "acct_demo", "pk_live"),
                "other": create_key(session, "acct_other", "sk_live"),
            }
        yield Api(client, gateway, keys)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path)


# ------------------------------------------------------------------------ cheap rejections


def test_no_key_and_malformed_json_is_401_not_422(api: Api) -> None:
    response = api.client.post(
        CALLS, content="{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 401, "missing_api_key", "Authorization")
    response = api.client.post(
        CALLS, content="{not json", headers={"Authorization": "Bearer sk_live_nope0123456789abc"}
    )
    assert_error(response, 401, "invalid_api_key", "Authorization")


def test_text_plain_body_is_415_naming_application_json(api: Api) -> None:
    headers = api.headers(**{"Content-Type": "text/plain"})
    response = api.client.post(CALLS, content='{"type": "web"}', headers=headers)
    error = assert_error(response, 415, "unsupported_media_type", "Content-Type")
    assert "application/json" in error["message"]
    form = api.client.post(CALLS, data={"type": "web"}, headers=api.headers())
    assert_error(form, 415, "unsupported_media_type", "Content-Type")
    assert api.gateway.dispatches == []


def test_malformed_json_names_the_expected_content_type(api: Api) -> None:
    headers = api.headers(**{"Content-Type": "application/json"})
    for content in ("{not json", "[]"):
        response = api.client.post(CALLS, content=content, headers=headers)
        error = assert_error(response, 422, "invalid_json")
        assert "application/json" in error["message"]


def test_json_with_charset_is_accepted(api: Api) -> None:
    headers = api.headers(**{"Content-Type": "application/json; charset=utf-8"})
    response = api.client.post(CALLS, content=WEB_MINIMAL.text(), headers=headers)
    assert response.status_code == 201, response.text


def test_declared_oversized_body_is_413(api: Api) -> None:
    body = b'{"type": "web", "metadata": {"x": "' + b"a" * (1024 * 1024) + b'"}}'
    headers = api.headers(**{"Content-Type": "application/json"})
    assert_error(api.client.post(CALLS, content=body, headers=headers), 413, "payload_too_large")


def test_streamed_oversized_body_is_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "web", "metadata": {"x": "'
        for _ in range(40):
            yield b"a" * 32 * 1024

    headers = api.headers(**{"Content-Type": "application/json"})
    response = api.client.post(CALLS, content=chunks(), headers=headers)
    assert_error(response, 413, "payload_too_large")


def test_unsigned_event_is_401_before_its_body(api: Api) -> None:
    url = "/internal/v1/calls/call_x/events"
    response = api.client.post(url, content=b"x" * (17 * 1024 * 1024))
    assert_error(response, 401, "invalid_signature", "Convoi-Signature")


def test_oversized_signed_event_is_413(api: Api) -> None:
    url = "/internal/v1/calls/call_x/events"
    headers = {"Convoi-Signature": "v1=00", "Convoi-Timestamp": "1"}
    response = api.client.post(url, content=b"x" * (16 * 1024 * 1024 + 1), headers=headers)
    assert_error(response, 413, "payload_too_large")


# ------------------------------------------------------------------------ rate limits


def test_rate_limiter_refills_evenly() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    for _ in range(6):
        limiter.check("key", 6)
    with pytest.raises(TooManyRequests) as caught:
        limiter.check("key", 6)
    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after == 10  # 6 per minute: one every 10 s
    limiter.check("other", 6)  # per key
    now[0] += 10
    limiter.check("key", 6)
    with pytest.raises(TooManyRequests):
        limiter.check("key", 6)
    limiter.check("key", 0)  # 0: no limit


def test_pk_key_is_rate_limited_tightly(tmp_path: Path) -> None:
    for api in make_api(tmp_path, CONVOI_RATE_LIMIT_PK_PER_MINUTE=5):
        statuses = [api.create(WEB, key="pk").status_code for _ in range(8)]
        assert statuses == [201] * 5 + [429] * 3
        response = api.create(WEB, key="pk")
        assert_error(response, 429, "rate_limited", None)
        assert int(response.headers["Retry-After"]) >= 1
        assert api.create(WEB, key="sk").status_code == 201  # another key, its own budget
        assert len(api.gateway.dispatches) == 6


def test_default_pk_budget_refuses_a_burst_of_300(api: Api) -> None:
    responses = [api.create(WEB, key="pk") for _ in range(300)]
    codes = [r.json()["error"]["code"] for r in responses if r.status_code == 429]
    assert codes.count("rate_limited") >= 260  # 30 per minute (plus what refills meanwhile)
    assert {r.status_code for r in responses} == {201, 429}
    assert len(api.gateway.dispatches) <= 20  # and the account's 20 concurrent calls


# ------------------------------------------------------------------------ concurrent calls


def test_concurrent_call_limit_per_account(tmp_path: Path) -> None:
    for api in make_api(tmp_path, CONVOI_MAX_CONCURRENT_CALLS=2):
        first = api.create(WEB).json()["id"]
        assert api.create(WEB).status_code == 201
        refused = api.create(WEB)
        assert_error(refused, 429, "concurrency_limit", None)
        assert int(refused.headers["Retry-After"]) >= 1
        assert len(api.gateway.dispatches) == 2
        assert api.create(WEB, key="other").status_code == 201  # another account
        assert api.event(first, 1, "active").status_code == 201
        assert_error(api.create(WEB), 429, "concurrency_limit")  # active still counts
        ended = api.event(
            first, 2, "completed", event_type="call.ended", ended_reason="customer_hangup"
        )
        assert ended.status_code == 201, ended.text
        assert api.create(WEB).status_code == 201


def test_refused_create_releases_its_idempotency_key(tmp_path: Path) -> None:
    for api in make_api(tmp_path, CONVOI_MAX_CONCURRENT_CALLS=1):
        first = api.create(WEB).json()["id"]
        assert_error(api.create(WEB, **{"Idempotency-Key": "k-1"}), 429, "concurrency_limit")
        ended = api.event(
            first, 1, "completed", event_type="call.ended", ended_reason="customer_hangup"
        )
        assert ended.status_code == 201, ended.text
        retried = api.create(WEB, **{"Idempotency-Key": "k-1"})
        assert retried.status_code == 201, retried.text
        assert "Idempotent-Replayed" not in retried.headers
        assert retried.json()["id"] != first
