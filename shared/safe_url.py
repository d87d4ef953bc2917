"""Where a client webhook may point: https only, to hosts with public addresses (no SSRF).

Checked at submit (a refused URL is a 422) and again at every delivery, where the checked address
is the one connected to (shared/notify.py pins it), so a name that re-resolves to a private address
between check and connect (DNS rebinding) is never reached. CLIENT_WEBHOOK_ALLOW_PRIVATE=1 allows
http and non-public addresses, for local tests only.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    """The URL may not be called; the message is safe to show to the client."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name as written (Host header, TLS SNI and certificate check)
    port: int
    path: str  # path and query
    address: str  # the checked IP address to connect to


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses (tests replace this to play DNS)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check(url: str, allow_private: bool = False) -> Target:
    """The target to connect to, or UnsafeUrl saying why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("not a valid URL") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeUrl("must be an https URL")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("must not carry credentials")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal else resolve(host, port)
    if not addresses:
        raise UnsafeUrl("host does not resolve")
    usable = addresses if allow_private else [a for a in addresses if is_public(a)]
    if not usable:
        raise UnsafeUrl("points to a private, loopback or link-local address")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=usable[0])
