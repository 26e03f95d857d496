"""Reference receiver of call events (what the control plane implements for DESIGN §8).

The storage (:mod:`convoi.receiver.store`) and the request handling (:mod:`convoi.receiver.ingest`,
signature check included) do not depend on any web framework; :mod:`convoi.receiver.app` wraps
them in an aiohttp app and ``python -m convoi.receiver`` runs it.
"""

from __future__ import annotations

from convoi.receiver.ingest import IngestResult, ingest_event
from convoi.receiver.store import CallState, EventStore, RecordOutcome, StoredEvent

__all__ = [
    "CallState",
    "EventStore",
    "IngestResult",
    "RecordOutcome",
    "StoredEvent",
    "ingest_event",
]
