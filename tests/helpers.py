"""Plain helpers shared by the test modules: ids of the shipped definitions, builders, ports.

Fixtures live in ``tests/conftest.py``; this module holds what tests import by name::

    from tests.helpers import SUPPORT, free_port, make_event
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from convoi.reporting.events import CallEvent, Cost

REPO = Path(__file__).resolve().parents[1]
"""The repository root."""
AGENTS_CONFIG = REPO / "agents_config"
"""The shipped definitions."""

# ---- ids in agents_config/ -------------------------------------------------------------------

SUPPORT = "agt_b88d642dd68747f28305c428b209xxxx"
"""Agent "Support" (a web agent; also a member of the customer-care squad)."""
SALES = "agt_0a9b8c7d6e5f40312a3b4c5d6e7f8a9b"
"""Agent "Sales"."""
BILLING = "agt_5d0c7a1e9b2f4c3a8e6d4b2a1c0f9e8d"
"""Agent "Billing" (member of the customer-care squad)."""
TRIAGE = "agt_1f2e3d4c5b6a47988a7b6c5d4e3f2a1b"
"""Agent "Triage" (the customer-care squad's first member)."""
SQUAD = "sqd_3fa85f6457174562b3fc2c963f66afa6"
"""Squad (workforce) "Customer care"."""
US_LINE = "phn_c38155f043624745a66d2e28c185xxxx"
"""Phone number +15550000001, "US sales line" (SIP trunk without auth)."""
UAE_LINE = "phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7"
"""Phone number +971800000002, "UAE customer-care line" (trunk password in CONVOI_TRUNK_UAE_PASSWORD)."""
HELP_KB = "kb_3a1c9e2b7d4f4a0b8c6e1f2a3b4c5d6e"
"""Knowledge base "Product help centre"."""
BILLING_KB = "kb_7e4d2c1b0a9f48e6b5d3c2a1f0e9d8c7"
"""Knowledge base "Billing policies"."""

# ---- builders --------------------------------------------------------------------------------


def make_event(call_id: str, sequence: int, **fields: object) -> CallEvent:
    """A valid ``call.status`` event (``active``, a small cost, metadata); ``fields`` override."""
    values: dict[str, object] = {
        "id": f"evt_{uuid.uuid4().hex}",
        "call_id": call_id,
        "sequence": sequence,
        "type": "call.status",
        "created_at": time.time(),
        "status": "active",
        "cost": Cost(amount=Decimal("0.0123")),
        "metadata": {"campaign": "may"},
    }
    values.update(fields)
    return CallEvent.model_validate(values)


# ---- ports and waiting -----------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on right now (TCP by default, ``SOCK_DGRAM`` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    predicate: Callable[[], bool],
    what: str = "the condition",
    timeout: float = 15.0,
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` every ``interval`` s until it holds; fail after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
