"""The reporting channel of a process: the durable outbox plus, when configured, its sender.

Events are always committed to the outbox. With ``CONVOI_API_URL`` and ``CONVOI_EVENTS_SECRET``
set they are also sent (signed) to the control plane; without them they wait in the outbox and go
out once a worker with delivery configured starts on the same outbox file.
"""

from __future__ import annotations

import logging

from convoi.reporting.delivery import DeliverySettings, EventDelivery
from convoi.reporting.events import CallEvent
from convoi.reporting.outbox import Outbox

__all__ = ["ReportingChannel"]

logger = logging.getLogger("convoi.reporting")


class ReportingChannel:
    """Outbox + optional background delivery for one process (or one job)."""

    def __init__(self, settings: DeliverySettings, *, poll_interval: float = 10.0) -> None:
        self.settings = settings
        settings.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(settings.outbox_path)
        self.delivery: EventDelivery | None = None
        if settings.configured:
            self.delivery = EventDelivery(settings, self.outbox, poll_interval=poll_interval)
        else:
            logger.warning(
                "CONVOI_API_URL / CONVOI_EVENTS_SECRET not set: call events are kept in the outbox "
                "%s and not sent",
                settings.outbox_path,
            )

    def start(self) -> None:
        """Start sending (resends whatever is pending first). Call from the event loop."""
        if self.delivery is not None:
            self.delivery.start()

    def on_event(self, event: CallEvent) -> None:
        """Wake the sender after an event was committed (call from the event loop)."""
        if self.delivery is not None:
            self.delivery.notify()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Try to deliver what is due within ``timeout``; the rest stays in the outbox."""
        if self.delivery is not None:
            await self.delivery.aclose(timeout)
        self.outbox.close()
