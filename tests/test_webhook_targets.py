"""Webhooks never reach into our own network outside local use (controlplane.webhooks_targets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from convoi.controlplane import create_app
from convoi.controlplane.db.engine import Database
from convoi.controlplane.keys import create_key
from convoi.controlplane.webhooks_delivery import WebhookDeliverer
from convoi.controlplane.webhooks_outbox import Claimed
from convoi.controlplane.webhooks_targets import blocked_address, blocked_host, refused_target
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from tests.test_controlplane_api import make_settings

PRODUCTION = {
    "CONVOI_ENVIRONMENT": "production",
    "LIVEKIT_API_KEY": "APIprodkey",
    "LIVEKIT_API_SECRET": "a-long-real-secret",
    "CONVOI_EVENTS_SECRET": "a-real-events-secret-0123456789abcdef",
}


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space
        "0.0.0.0",
        "::1",
        "fe80::1%eth0",
        "fd00::1",
        "::ffff:10.0.0.1",  # IPv4-mapped
        "224.0.0.1",
        "not-an-ip",
    ],
)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert blocked_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not blocked_address(address)


def test_hosts_that_are_local_by_name_or_literal_are_blocked_without_resolving() -> None:
    for host in ("localhost", "LOCALHOST.", "api.localhost", "db.internal", "printer.local"):
        assert blocked_host(host), host
    assert blocked_host("[::1]") and blocked_host("10.1.2.3")
    assert not blocked_host("example.com") and not blocked_host("93.184.216.34")


async def test_a_delivery_target_is_checked_by_what_it_resolves_to() -> None:
    assert await refused_target("https://127.0.0.1:8443/hook") == (
        "refused: 127.0.0.1 is not a public address"
    )
    assert "not a public address" in (await refused_target("http://localhost/hook") or "")
    assert await refused_target("https://93.184.216.34/hook") is None  # a literal: no lookup
    unresolvable = await refused_target("https://no-such-host.invalid/hook")
    assert unresolvable is not None and unresolvable.startswith("could not resolve")


@pytest.fixture
def production_api(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    app = create_app(make_settings(tmp_path, **PRODUCTION), FakeLiveKitGateway())
    with TestClient(app) as client:
        with app.state.convoi.database.session() as session:
            key = create_key(session, "acct_demo", "sk_live")
        yield client, key


@pytest.mark.parametrize(
    "url",
    ["https://169.254.169.254/latest", "https://localhost/x", "https://10.0.0.5/x", "http://a.com"],
)
def test_outside_local_use_a_webhook_to_our_network_is_refused_at_creation(
    production_api: tuple[TestClient, str], url: str
) -> None:
    client, key = production_api
    response = client.post(
        "/api/v1/public/webhooks", json={"url": url}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "url"
    ok = client.post(
        "/api/v1/public/webhooks",
        json={"url": "https://hooks.example.com/convoi"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert ok.status_code == 201, ok.text


async def test_outside_local_use_a_delivery_to_a_private_address_is_never_sent(
    tmp_path: Path,
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    settings = make_settings(tmp_path, **PRODUCTION)
    deliverer = WebhookDeliverer(
        Database(settings.database_url), settings, transport=httpx.MockTransport(handler)
    )
    deliverer.start()
    try:
        inward = Claimed(1, "evt_1", "https://127.0.0.1:9/hook", "whsec_x", "{}")
        outcome = await deliverer.attempt(inward)
        assert not outcome.ok and outcome.error == "refused: 127.0.0.1 is not a public address"
        assert sent == []  # nothing left the control plane
        public = Claimed(2, "evt_2", "https://93.184.216.34/hook", "whsec_x", "{}")
        assert (await deliverer.attempt(public)).ok and len(sent) == 1
    finally:
        await deliverer.stop()
