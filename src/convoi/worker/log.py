"""The worker's logger. Per-call fields (call_id, room, job_id) ride on ``extra``.

livekit-agents marks log fields that carry conversation content with an ``lk.pii.`` prefix (the
transcript answering-machine detection classified, a user input it skipped);
:func:`keep_customer_data_out_of_logs` drops them from its records: customer speech stays out of
operational logs (the transcript travels in ``call.ended`` only).
"""

from __future__ import annotations

import logging

__all__ = ["PII_FIELD_PREFIX", "PiiFieldsFilter", "keep_customer_data_out_of_logs", "logger"]

logger = logging.getLogger("convoi.worker")

PII_FIELD_PREFIX = "lk.pii."
"""livekit-agents' prefix of log fields carrying user data."""


class PiiFieldsFilter(logging.Filter):
    """Removes ``lk.pii.*`` fields from each record (the record itself is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop the record's PII fields; always keep the record."""
        for key in [k for k in vars(record) if k.startswith(PII_FIELD_PREFIX)]:
            delattr(record, key)
        return True


def keep_customer_data_out_of_logs(name: str = "livekit.agents") -> None:
    """Install :class:`PiiFieldsFilter` on the logger ``name`` (once)."""
    target = logging.getLogger(name)
    if not any(isinstance(f, PiiFieldsFilter) for f in target.filters):
        target.addFilter(PiiFieldsFilter())
