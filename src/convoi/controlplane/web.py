"""The web pages: the web-call demo (``GET /demo``, bundle under ``/demo/static/``) and the calls
dashboard (``GET /dashboard``, ``/dashboard/static/``), both built from ``web/``.

The demo page creates a web call through the public API, joins it with livekit-client (bundled
locally by ``scripts/build-web``, no CDN), plays the agent, shows the live transcript and the
call's status, duration and cost, and hangs up. The dashboard signs in with an API key and lists
the account's calls with live status, and for one call its transcript, webhook deliveries, cost
and latency charts; it reads only the public API, with the user's key.

The bundle is build output and never committed: ``scripts/build-web`` writes it to
``.cache/web/demo/`` (keyed by the lockfile and the sources). The app serves the directory named by
``CONVOI_WEB_DIR`` (default ``.cache/web/demo``, relative to the working directory), looked up on
every request, so a bundle built while convoi-api runs is served at once. Until it is built,
``/demo`` and ``/dashboard`` answer 503 with a page that says how to build them.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

__all__ = [
    "DEFAULT_WEB_DIR",
    "WEB_DIR_ENV",
    "install_dashboard_page",
    "install_demo_page",
    "web_dir",
]

WEB_DIR_ENV = "CONVOI_WEB_DIR"
DEFAULT_WEB_DIR = Path(".cache/web/demo")
PAGE_PATH = "/demo"
STATIC_PATH = "/demo/static"
DASHBOARD_PATH = "/dashboard"
DASHBOARD_STATIC_PATH = "/dashboard/static"

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Convoi · {title} not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto">
<h1>The {title} is not built</h1>
<p>Build it once with <code>scripts/build-web</code> (needs Node.js&nbsp;&ge;&nbsp;20 and npm),
then reload this page.</p>
<p>convoi-api looked for its page in <code>{directory}</code>; set
<code>{env}</code> to serve a bundle from elsewhere.</p>
</body></html>
"""


def web_dir() -> Path:
    """Where the built page is: ``$CONVOI_WEB_DIR`` or ``.cache/web/demo``."""
    return Path(os.environ.get(WEB_DIR_ENV) or DEFAULT_WEB_DIR)


class _BundleFiles(StaticFiles):
    """StaticFiles whose directory is resolved per request (the bundle may appear later)."""

    def __init__(self, directory: Path | None) -> None:
        self._fixed = directory
        super().__init__(directory=directory or web_dir(), check_dir=False)

    async def check_config(self) -> None:
        """No start-up check: a missing bundle answers 404 (and ``/demo`` explains)."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        self.all_directories = [self._fixed or web_dir()]  # same value from every thread
        return super().lookup_path(path)


def _install_page(
    app: FastAPI, directory: Path | None, *, page: str, index: str, static: str, title: str
) -> None:
    """``GET page`` answers ``index`` from the bundle (503 until built); ``static`` its files."""

    def bundle() -> Path:
        return directory or web_dir()

    @app.get(page, include_in_schema=False, name=f"{page.strip('/')}-page")
    def serve_page(request: Request) -> Response:
        found = bundle() / index
        if not found.is_file():
            body = _NOT_BUILT.format(
                title=title, directory=html.escape(str(bundle().resolve())), env=WEB_DIR_ENV
            )
            return HTMLResponse(body, status_code=503, headers={"Cache-Control": "no-store"})
        return FileResponse(found, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount(static, _BundleFiles(directory), name=f"{page.strip('/')}-static")


def install_demo_page(app: FastAPI, directory: Path | None = None) -> None:
    """Serve the demo page on ``app``: ``GET /demo`` and ``/demo/static/…``.

    ``directory`` pins the bundle; by default it is :func:`web_dir`, read on each request.
    """
    _install_page(
        app, directory, page=PAGE_PATH, index="index.html", static=STATIC_PATH, title="demo page"
    )


def install_dashboard_page(app: FastAPI, directory: Path | None = None) -> None:
    """Serve the calls dashboard on ``app``: ``GET /dashboard`` and ``/dashboard/static/…``.

    The same bundle as the demo page (``dashboard.html``, ``dashboard.js``, ``dashboard.css``).
    The page holds no data of its own: it calls the public API with the key the user signs in
    with (kept in the tab's sessionStorage), so the API's rules for that key apply.
    """
    _install_page(
        app,
        directory,
        page=DASHBOARD_PATH,
        index="dashboard.html",
        static=DASHBOARD_STATIC_PATH,
        title="calls dashboard",
    )
