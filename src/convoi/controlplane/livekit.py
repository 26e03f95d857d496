"""The seam between the control plane and LiveKit.

:class:`LiveKitGateway` is the small protocol the call service uses: create a room, mint a
participant token, dispatch the worker, delete a room. :class:`LiveKitApiGateway` implements it
with livekit-api (Twirp over HTTP); tests use :class:`convoi.devstack.controlplane_fakes.FakeLiveKitGateway`.

The methods are synchronous (routes run in FastAPI's thread pool); the real gateway runs
livekit-api's asyncio client on its own event loop thread (an anyio blocking portal) and converts
failures at the boundary: LiveKit answering 4xx → :class:`LiveKitRejected`, unreachable, timed out
or 5xx → :class:`LiveKitUnavailable`.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar, runtime_checkable

import aiohttp
from anyio.from_thread import BlockingPortal, start_blocking_portal
from livekit import api

from convoi.controlplane.errors import LiveKitRejected, LiveKitUnavailable
from convoi.tokens import join_token

__all__ = ["LiveKitApiGateway", "LiveKitGateway", "RoomMessenger", "http_url"]

T = TypeVar("T")


@runtime_checkable
class LiveKitGateway(Protocol):
    """What the control plane needs from LiveKit."""

    def create_room(self, name: str, *, empty_timeout: int) -> None:
        """Create the room ``name`` (closed by LiveKit if nobody joins within ``empty_timeout`` s)."""
        ...

    def participant_token(
        self, room: str, identity: str, name: str | None, ttl_seconds: int
    ) -> str:
        """A JWT letting ``identity`` join ``room`` only (publish/subscribe audio and data)."""
        ...

    def dispatch(self, room: str, agent_name: str, metadata: str) -> str:
        """Dispatch the worker registered as ``agent_name`` into ``room``; returns the dispatch id."""
        ...

    def delete_room(self, name: str) -> None:
        """Delete the room (best effort: used to clean up after a failed dispatch)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class RoomMessenger(Protocol):
    """A gateway that can also publish data to a room (the hang-up API needs it)."""

    def send_data(self, room: str, topic: str, payload: bytes) -> None:
        """Publish ``payload`` on ``topic`` to every participant of ``room``."""
        ...


def http_url(url: str) -> str:
    """The HTTP(S) URL of a LiveKit server given as ``ws://`` / ``wss://``."""
    return url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)


class LiveKitApiGateway:
    """:class:`LiveKitGateway` backed by livekit-api."""

    def __init__(self, url: str, api_key: str, api_secret: str, *, timeout: float = 10.0) -> None:
        self.url = http_url(url)
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout = timeout
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._client: api.LiveKitAPI | None = None

    # ------------------------------------------------------------------ plumbing

    def _run(self, what: str, fn: Callable[[api.LiveKitAPI], Awaitable[T]]) -> T:
        with self._lock:
            if self._portal is None:
                self._portal_cm = start_blocking_portal()
                self._portal = self._portal_cm.__enter__()
            portal = self._portal

        async def call() -> T:
            if self._client is None:  # created on the portal's loop, which owns its session
                timeout = aiohttp.ClientTimeout(total=self._timeout)
                self._client = api.LiveKitAPI(
                    self.url, self._api_key, self._api_secret, timeout=timeout
                )
            return await fn(self._client)

        try:
            return portal.call(call)
        except api.ServerError as exc:
            message = f"LiveKit could not {what}: {exc.code}: {exc.message or 'no detail'}"
            if exc.status >= 500:
                raise LiveKitUnavailable(message) from exc
            raise LiveKitRejected(message) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise LiveKitUnavailable(
                f"LiveKit unreachable at {self.url} (could not {what}): {detail}"
            ) from exc

    def close(self) -> None:
        """Close the HTTP session and stop the event loop thread."""
        with self._lock:
            portal, portal_cm = self._portal, self._portal_cm
            self._portal = self._portal_cm = None
        if portal is None or portal_cm is None:
            return
        client, self._client = self._client, None
        if client is not None:
            portal.call(client.aclose)
        portal_cm.__exit__(None, None, None)

    # ------------------------------------------------------------------ LiveKitGateway

    def create_room(self, name: str, *, empty_timeout: int) -> None:
        """Create the room."""
        request = api.CreateRoomRequest(name=name, empty_timeout=empty_timeout)
        self._run("create the room", lambda lk: lk.room.create_room(request))

    def participant_token(
        self, room: str, identity: str, name: str | None, ttl_seconds: int
    ) -> str:
        """Sign a join token for ``room`` only."""
        return join_token(
            self._api_key, self._api_secret, room, identity, name=name, ttl_seconds=ttl_seconds
        )

    def dispatch(self, room: str, agent_name: str, metadata: str) -> str:
        """CreateAgentDispatch with the CallSpec JSON as metadata."""
        request = api.CreateAgentDispatchRequest(
            agent_name=agent_name, room=room, metadata=metadata
        )
        dispatch = self._run(
            "dispatch the worker", lambda lk: lk.agent_dispatch.create_dispatch(request)
        )
        return str(dispatch.id)

    def delete_room(self, name: str) -> None:
        """Delete the room."""
        request = api.DeleteRoomRequest(room=name)
        self._run("delete the room", lambda lk: lk.room.delete_room(request))

    def room_occupants(self, room: str) -> tuple[bool, bool]:
        """``(callee, agent)`` in ``room``: a SIP or browser participant; an agent (see
        :class:`convoi.controlplane.checkpoints.RoomProbe`). Both False when the room is gone."""
        request = api.ListParticipantsRequest(room=room)
        try:
            listed = self._run(
                "list the participants", lambda lk: lk.room.list_participants(request)
            )
        except LiveKitRejected:  # no such room
            return False, False
        live = [p for p in listed.participants if p.state != api.ParticipantInfo.State.DISCONNECTED]
        kinds = (api.ParticipantInfo.Kind.SIP, api.ParticipantInfo.Kind.STANDARD)
        callee = any(p.kind in kinds for p in live)
        agent = any(p.kind == api.ParticipantInfo.Kind.AGENT for p in live)
        return callee, agent

    def send_data(self, room: str, topic: str, payload: bytes) -> None:
        """Publish a reliable data packet on ``topic`` to everyone in ``room`` (SendData)."""
        request = api.SendDataRequest(
            room=room, data=payload, kind=api.DataPacket.Kind.RELIABLE, topic=topic
        )
        self._run("send data to the room", lambda lk: lk.room.send_data(request))
