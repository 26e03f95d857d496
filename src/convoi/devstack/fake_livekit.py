"""A stand-in LiveKit server for the Calls API's Twirp calls, over real HTTP (devstack only).

``python -m convoi.devstack.fake_livekit --port 7990 [--latency-ms 20]`` answers the three
requests the control plane's :class:`~convoi.controlplane.livekit.LiveKitApiGateway` sends
(``RoomService/CreateRoom``, ``RoomService/DeleteRoom``, ``AgentDispatchService/CreateDispatch``,
protobuf bodies as livekit-api sends them), each after ``--latency-ms``, so several real
``convoi-api`` processes can be driven without a livekit-server (the load test, the
multi-process tests). It checks that a bearer token is present, not its signature.

``GET /fake/dispatches`` answers ``{"rooms": [...]}``: the room of every dispatch so far, in
order (a test asserts "dispatched exactly once per call" from it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json

from aiohttp import web
from google.protobuf.message import Message
from livekit import api

__all__ = ["FakeLiveKitApp", "main"]

_PROTOBUF = "application/protobuf"


class FakeLiveKitApp:
    """The aiohttp application and what it has recorded."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.dispatch_rooms: list[str] = []
        self.rooms: set[str] = set()
        self._ids = itertools.count(1)
        self.app = web.Application()
        self.app.router.add_post("/twirp/livekit.RoomService/CreateRoom", self._create_room)
        self.app.router.add_post("/twirp/livekit.RoomService/DeleteRoom", self._delete_room)
        self.app.router.add_post(
            "/twirp/livekit.AgentDispatchService/CreateDispatch", self._dispatch
        )
        self.app.router.add_get("/fake/dispatches", self._dispatches)

    async def _read(self, request: web.Request) -> bytes:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            raise web.HTTPUnauthorized(
                text=json.dumps({"code": "unauthenticated", "msg": "no token"}),
                content_type="application/json",
            )
        body = await request.read()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)  # a LiveKit server across a network
        return body

    @staticmethod
    def _answer(message: Message) -> web.Response:
        return web.Response(body=message.SerializeToString(), content_type=_PROTOBUF)

    async def _create_room(self, request: web.Request) -> web.Response:
        create = api.CreateRoomRequest.FromString(await self._read(request))
        self.rooms.add(create.name)
        return self._answer(api.Room(sid=f"RM_{next(self._ids)}", name=create.name))

    async def _delete_room(self, request: web.Request) -> web.Response:
        delete = api.DeleteRoomRequest.FromString(await self._read(request))
        self.rooms.discard(delete.room)
        return self._answer(api.DeleteRoomResponse())

    async def _dispatch(self, request: web.Request) -> web.Response:
        create = api.CreateAgentDispatchRequest.FromString(await self._read(request))
        self.dispatch_rooms.append(create.room)
        dispatch = api.AgentDispatch(
            id=f"AD_{next(self._ids)}", agent_name=create.agent_name, room=create.room
        )
        return self._answer(dispatch)

    async def _dispatches(self, _request: web.Request) -> web.Response:
        return web.json_response({"rooms": self.dispatch_rooms})


def main(argv: list[str] | None = None) -> int:
    """Serve until killed."""
    parser = argparse.ArgumentParser(prog="python -m convoi.devstack.fake_livekit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeLiveKitApp(args.latency_ms / 1000)
    web.run_app(fake.app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
