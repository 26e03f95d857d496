"""Where a customer's webhook may point: the public internet, never our own network.

A webhook URL is chosen by the customer and fetched by the control plane, so without a check it
is a way into whatever the control plane can reach (a cloud metadata service at 169.254.169.254,
a database on 10.0.0.5, the API itself on 127.0.0.1). Outside ``CONVOI_ENVIRONMENT=local``:

- at creation, a URL whose host is an IP literal that is not global, or a name like
  ``localhost`` / ``*.internal`` / ``*.local``, is refused (422 naming ``url``);
- at each delivery the host is resolved again and the attempt is refused (and retried later, as
  any failure) when any of its addresses is not global: a name that resolved to a public address
  when the endpoint was created and to a private one now (DNS rebinding) is caught here.

Redirects are never followed (the deliverer's client), so a public endpoint cannot bounce the
request inward either. In ``local`` every target is allowed (the devstack's receiver is on
127.0.0.1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["blocked_address", "blocked_host", "refused_target"]

_PRIVATE_NAMES = ("localhost", "localhost.localdomain")
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def blocked_address(address: str) -> bool:
    """Whether ``address`` (an IP) is not on the public internet (loopback, private, link-local,
    shared, reserved, multicast; an IPv4-mapped IPv6 address counts as its IPv4). Pure."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def blocked_host(host: str) -> bool:
    """Whether ``host`` (a URL's host) is refused without resolving it: a non-global IP literal
    or a name that is local by definition. Pure."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return name in _PRIVATE_NAMES or name.endswith(_PRIVATE_SUFFIXES)
    return blocked_address(name)


async def refused_target(url: str) -> str | None:
    """Why a delivery to ``url`` is refused now (its host resolves to a non-public address, or
    does not resolve), or None when every address it resolves to is public."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if blocked_host(host):
        return f"refused: {host} is not a public address"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"could not resolve {host}: {exc.strerror or exc}"
    addresses = sorted({str(info[4][0]) for info in infos})
    private = [a for a in addresses if blocked_address(a)]
    if private:
        return f"refused: {host} resolves to a non-public address ({private[0]})"
    return None
