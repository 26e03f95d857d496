"""Reference receiver of call events (what the control plane implements for docs/architecture.md §8).

The storage (:mod:`convoi.receiver.store`) and the request handling (:mod:`convoi.receiver.ingest`,
signature check included) do not depend on any web framework; :mod:`convoi.receiver.app` wraps
them in an aiohttp app and ``python -m convoi.receiver`` runs it.
"""

from __future__ import annotations

from convoi.receiver.ingest import IngestResult, ingest_event
from convoi.receiver.store import ReceivedCall, ReceiverStore, RecordOutcome, StoredEvent

__all__ = [
    "IngestResult",
    "ReceivedCall",
    "ReceiverStore",
    "RecordOutcome",
    "StoredEvent",
    "ingest_event",
]
