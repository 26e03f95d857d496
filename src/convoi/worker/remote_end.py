"""The hang-up API's end of the wire: a call's job listens for the control plane's end request.

``POST /api/v1/public/calls/{id}/end`` publishes :func:`convoi.room_control.encode_end` in the
call's room through LiveKit's server API. :class:`RemoteEnd` accepts it only from the server (a
packet with no sender participant: a browser in the room cannot forge one), on
:data:`convoi.room_control.TOPIC`, for this call's id, and then asks the call that owns it to end
(:class:`~convoi.worker.call.Call` decides how: ``api_hangup`` after the agent's sentence, or
``canceled`` before the call was active). It never ends the call itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from livekit import rtc

from convoi.room_control import TOPIC, parse_end
from convoi.worker.log import logger

__all__ = ["RemoteEnd"]


class RemoteEnd:
    """Listens on one call's room for the control plane's end request."""

    def __init__(
        self,
        room: rtc.Room,
        call_id: str,
        on_end: Callable[[], object],
        *,
        log_fields: dict[str, Any] | None = None,
    ) -> None:
        self._room = room
        self._call_id = call_id
        self._on_end = on_end
        self._fields = log_fields or {}
        self._started = False
        self._stopped = False

    def start(self) -> None:
        """Start listening (the room is connected)."""
        if not self._started:
            self._room.on("data_received", self.on_packet)
            self._started = True

    def stop(self) -> None:
        """Stop acting on requests (the call is ending; the room goes with the job)."""
        self._stopped = True

    def on_packet(self, packet: rtc.DataPacket) -> None:
        """One data packet of the room: the end request, or ignored."""
        if self._stopped or packet.topic != TOPIC:
            return
        if packet.participant is not None:
            logger.warning(
                "ignored a control packet sent by a room participant", extra=self._fields
            )
            return
        request = parse_end(packet.data)
        if request is None or request.call_id != self._call_id:
            return
        logger.info("end requested through the API", extra=self._fields)
        self._on_end()
