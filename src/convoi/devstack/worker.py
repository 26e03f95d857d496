"""``convoi-devstack worker …``: the worker, with the devstack's stand-in for the SIP leg.

Exactly ``convoi-worker …`` (``start``, ``dev``, ``console``, ``check-config``, ``check-call``),
except that the ``participant`` dial mode is registered first, so ``CONVOI_DIAL_MODE=participant``
(what ``convoi-devstack up`` exports) dials the simulated caller instead of a SIP trunk. The
production worker has no such mode: it never places a pretend phone call.
"""

from __future__ import annotations

import sys

from convoi.devstack import participant_phone
from convoi.worker import cli

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Register the participant dialer, then run ``convoi-worker`` with ``argv``."""
    participant_phone.register()
    return cli.main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
