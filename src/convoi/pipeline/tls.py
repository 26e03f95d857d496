"""One TLS context per process for the providers' HTTP clients.

livekit's OpenAI plugin builds its own ``httpx.AsyncClient`` for every ``LLM`` it constructs, and
each client builds a fresh verified TLS context: reading and parsing the system's CA bundle, tens
of milliseconds on an idle machine and seconds on a loaded one (measured 2.75 s with the event loop
blocked, on the call's path before the greeting). A context is immutable once configured and safe to
share, so the job process builds one in its setup hook (:func:`shared_tls_context`, before any
call) and every LLM client of every call in the process reuses it.
"""

from __future__ import annotations

import functools
import ssl

import httpx2 as httpx  # the HTTP client the openai SDK (and livekit's plugin) use

__all__ = ["shared_tls_context"]


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The process's verified client TLS context (httpx's defaults: system trust store,
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured); built on first use, then reused."""
    return httpx.create_ssl_context()
