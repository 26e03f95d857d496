"""Shared pytest fixtures (keep small; add yours below)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from convoi.devstack.livekit_server import LiveKitServer


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[LiveKitServer]:
    """A livekit-server on ws://127.0.0.1:7880 (devkey/secret).

    Reuses one already answering there (e.g. from `convoi-devstack up`), else starts one for the
    session (building the pinned binary first if needed) and stops it at the end.
    """
    with LiveKitServer() as server:
        yield server
