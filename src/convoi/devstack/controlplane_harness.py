"""``ControlPlaneServer``: the app on a free loopback port, in a thread (for end-to-end tests).

Devstack-only: the control plane never imports it.

::

    settings = ControlPlaneSettings(CONVOI_DATABASE_URL=f"sqlite:///{tmp}/cp.sqlite3", ...)
    with ControlPlaneServer(settings) as cp:          # real LiveKit gateway unless one is given
        key = cp.create_key("acct_e2e", "sk_live")
        httpx.post(f"{cp.url}/api/v1/public/calls", json=..., headers={"Authorization": ...})
        worker_env = cp.worker_env()                  # CONVOI_API_URL + CONVOI_EVENTS_SECRET
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from convoi.controlplane.app import create_app, database_for
from convoi.controlplane.keys import KeyKind, create_key
from convoi.controlplane.livekit import LiveKitGateway
from convoi.controlplane.settings import ControlPlaneSettings

__all__ = ["ControlPlaneServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ControlPlaneServer:
    """Serve ``create_app(settings, gateway)`` with uvicorn on 127.0.0.1 until stopped."""

    def __init__(
        self,
        settings: ControlPlaneSettings,
        gateway: LiveKitGateway | None = None,
        *,
        port: int | None = None,
    ) -> None:
        self.settings = settings
        self.port = port or _free_port()
        self.database = database_for(settings)
        self.app = create_app(settings, gateway, database=self.database)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            # longer than uvicorn's 5 s: a busy client reusing a connection the server just
            # closed gets no answer at all (deployments sit behind a proxy with its own value)
            timeout_keep_alive=60,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def worker_env(self) -> dict[str, str]:
        """Variables that make a worker deliver its call events here."""
        return {
            "CONVOI_API_URL": self.url,
            "CONVOI_EVENTS_SECRET": self.settings.events_secret.get_secret_value(),
            "CONVOI_AGENT_NAME": self.settings.agent_name,
        }

    def create_key(self, account_id: str, kind: KeyKind = "sk_live") -> str:
        """Mint an API key (the account is created if new)."""
        with self.database.session() as session:
            return create_key(session, account_id, kind)

    def start(self, timeout: float = 30.0) -> ControlPlaneServer:
        """Start serving; returns once the port accepts requests (migrations applied)."""
        self._thread = threading.Thread(target=self._server.run, name="convoi-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("convoi-api stopped during start-up (see the log)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"convoi-api not serving on {self.url} after {timeout:.0f}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.database.dispose()

    def __enter__(self) -> ControlPlaneServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
