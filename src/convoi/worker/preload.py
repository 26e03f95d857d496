"""Side-effect module, imported once in livekit's forkserver (``preload_modules``).

Every job process is forked from the forkserver, so what is done here is done once per worker
and shared copy-on-write by all job processes, instead of once in each: importing Convoi's code
(the entrypoint and all it imports) and the first uses of :mod:`convoi.worker.warmup` (among
them the providers' TLS contexts: the CA bundle parsed, tens of milliseconds idle, seconds on a
loaded machine). Nothing here starts a thread or an event loop (the forkserver forks
after it). Under ``spawn`` nothing is preloaded and each job process does this itself in its
setup hook.
"""

from __future__ import annotations

import convoi.worker.entrypoint  # noqa: F401  (the job's code: imported for its side effect)
from convoi.worker.warmup import warm_up

warm_up()
