"""The control plane against a real livekit-server (its own, on ports 7980-7982).

A web call POSTed with the real LiveKit gateway creates the room, dispatches the agent name with
the CallSpec as metadata (checked through livekit-api), and hands out a token with which an rtc
participant joins that room under the returned identity. Wrong LiveKit credentials answer 502.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from livekit import api, rtc

from convoi.callspec import parse_callspec
from convoi.controlplane import ControlPlaneSettings, create_app
from convoi.controlplane.keys import create_key
from convoi.devstack.livekit_server import LiveKitServer, ServerConfig
from tests.fixtures.seed_examples import WEB_OVERRIDES

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
AGENT_NAME = "convoi-controlplane-e2e"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    """A livekit-server on 7980 (7880-7882 may be in use by another run)."""
    config = ServerConfig(port=7980, rtc_tcp_port=7981, rtc_udp_port=7982)
    with LiveKitServer(config, workdir=tmp_path_factory.mktemp("livekit-7980")) as lk:
        yield lk


def client_for(server: LiveKitServer, tmp_path: Path, **env: Any) -> tuple[TestClient, str]:
    values: dict[str, Any] = {
        "CONVOI_DATABASE_URL": f"sqlite:///{tmp_path}/controlplane.sqlite3",
        "CONVOI_CONFIG_DIR": REPO / "agents_config",
        "CONVOI_EVENTS_SECRET": "e2e-controlplane-secret",
        "CONVOI_AGENT_NAME": AGENT_NAME,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
        **env,
    }
    settings = ControlPlaneSettings(**values)
    app = create_app(settings)  # the real livekit-api gateway
    client = TestClient(app).__enter__()
    with app.state.convoi.database.session() as session:
        key = create_key(session, "acct_e2e", "sk_live")
    return client, key


async def test_web_call_creates_room_dispatch_and_a_joinable_token(
    server: LiveKitServer, tmp_path: Path
) -> None:
    client, key = client_for(server, tmp_path)
    try:
        response = client.post(
            "/api/v1/public/calls",
            json=json.loads(WEB_OVERRIDES.text()),
            headers={"Authorization": f"Bearer {key}"},
        )
    finally:
        client.__exit__(None, None, None)
    assert response.status_code == 201, response.text
    call = response.json()
    room_name, livekit = call["room_id"], call["livekit"]
    assert livekit["url"] == server.url

    async with api.LiveKitAPI(server.http_url, server.api_key, server.api_secret) as lk:
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
        assert [r.name for r in rooms.rooms] == [room_name]
        # livekit-server also lists the room's automatic dispatch (empty agent name, for workers
        # registered without one); ours is the explicit one.
        dispatches = await lk.agent_dispatch.list_dispatch(room_name=room_name)
        named = [d for d in dispatches if d.agent_name]
        assert [d.agent_name for d in named] == [AGENT_NAME]
        spec = parse_callspec(named[0].metadata)
        assert spec.call_id == call["id"]
        assert spec.participant_name == "xyz"
        assert spec.metadata == {"source": "landing-page", "user_ref": "u_42"}

        room = rtc.Room()
        try:
            await room.connect(livekit["url"], livekit["token"])
            assert room.name == room_name
            assert room.local_participant.identity == livekit["participant_identity"]
            assert room.local_participant.name == "xyz"
        finally:
            await room.disconnect()
        await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))


def test_wrong_livekit_credentials_answer_502(server: LiveKitServer, tmp_path: Path) -> None:
    client, key = client_for(server, tmp_path, LIVEKIT_API_SECRET="not-the-server-secret")
    try:
        response = client.post(
            "/api/v1/public/calls",
            json={"type": "web", "agent_id": "agt_b88d642dd68747f28305c428b209xxxx"},
            headers={"Authorization": f"Bearer {key}"},
        )
    finally:
        client.__exit__(None, None, None)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "livekit_error"
