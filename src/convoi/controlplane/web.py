"""The web-call demo page: ``GET /demo`` and its bundle under ``/demo/static/``.

The page (source in ``web/``) creates a web call through the public API, joins it with
livekit-client (bundled locally by ``scripts/build-web``, no CDN), plays the agent, shows the live
transcript and the call's status, duration and cost, and hangs up.

The bundle is build output and never committed: ``scripts/build-web`` writes it to
``.cache/web/demo/`` (keyed by the lockfile and the sources). The app serves the directory named by
``CONVOI_WEB_DIR`` (default ``.cache/web/demo``, relative to the working directory), looked up on
every request, so a bundle built while convoi-api runs is served at once. Until it is built,
``/demo`` answers 503 with a page that says how to build it.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

__all__ = ["DEFAULT_WEB_DIR", "WEB_DIR_ENV", "install_demo_page", "web_dir"]

WEB_DIR_ENV = "CONVOI_WEB_DIR"
DEFAULT_WEB_DIR = Path(".cache/web/demo")
PAGE_PATH = "/demo"
STATIC_PATH = "/demo/static"

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Convoi · demo page not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto">
<h1>The demo page is not built</h1>
<p>Build it once with <code>scripts/build-web</code> (needs Node.js&nbsp;&ge;&nbsp;20 and npm),
then reload this page.</p>
<p>convoi-api looked for <code>index.html</code> in <code>{directory}</code>; set
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


def install_demo_page(app: FastAPI, directory: Path | None = None) -> None:
    """Serve the demo page on ``app``: ``GET /demo`` and ``/demo/static/…``.

    ``directory`` pins the bundle; by default it is :func:`web_dir`, read on each request.
    """

    def bundle() -> Path:
        return directory or web_dir()

    @app.get(PAGE_PATH, include_in_schema=False)
    def demo_page(request: Request) -> Response:
        index = bundle() / "index.html"
        if not index.is_file():
            body = _NOT_BUILT.format(
                directory=html.escape(str(bundle().resolve())), env=WEB_DIR_ENV
            )
            return HTMLResponse(body, status_code=503, headers={"Cache-Control": "no-store"})
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount(STATIC_PATH, _BundleFiles(directory), name="demo-static")
