"""Where the service may connect on a URL it was given (no SSRF): https only, to hosts with public
addresses. Used for client webhooks and for the provider's output files.

A client webhook is checked at submit (a refused URL is a 422) and again at every delivery; each
connection (a delivery, an output download) goes to the checked address (`pinned`), so a name that
re-resolves to a private address between check and connect (DNS rebinding) is never reached.
CLIENT_WEBHOOK_ALLOW_PRIVATE=1 allows http and non-public addresses for webhooks, for local tests
only; outputs allow them only from a loopback host named in REPLICATE_OUTPUT_HOSTS (the local double).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    """The URL may not be called; the message is safe to show to the client."""


class Unresolved(UnsafeUrl):
    """The host has no address now (perhaps only for now: DNS may be failing)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name as written (Host header, TLS SNI and certificate check)
    port: int
    path: str  # path and query
    address: str  # the checked IP address to connect to


def _networks(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Never public unicast, listed here rather than left to `ipaddress.is_global`, whose table differs
# between Python versions and calls some of these global (IANA's special-purpose registries).
NOT_PUBLIC_V4 = _networks(
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # carrier-grade NAT shared space
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the broadcast address
)
NOT_PUBLIC_V6 = _networks(
    "::/96",  # unspecified, loopback, IPv4-compatible (deprecated, routed nowhere public)
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT), local to a translator
    "64:ff9b:1::/48",  # local-use NAT64: the IPv4 address may sit at any of six places
    "100::/64",  # discard
    "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) among them
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
    "5f00::/16",  # SRv6 segment identifiers
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the IPv4 address is the last 32 bits


def carried_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches, for the forms where it says so in a fixed place:
    IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::/48)."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public(address: str) -> bool:
    """Whether `address` is public unicast: an IPv6 address that carries an IPv4 one is judged by
    that one; the ranges above are refused, and so is anything `ipaddress` does not call global."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and (inner := carried_ipv4(ip)) is not None:
        ip = inner
    refused = NOT_PUBLIC_V4 if isinstance(ip, ipaddress.IPv4Address) else NOT_PUBLIC_V6
    return ip.is_global and not any(ip in network for network in refused)


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
        raise Unresolved("host does not resolve")
    usable = addresses if allow_private else [a for a in addresses if is_public(a)]
    if not usable:
        raise UnsafeUrl("points to a private, loopback or link-local address")
    # IPv4 first: a Lambda function outside a VPC reaches the Internet over IPv4 only, and a laptop
    # resolves localhost to ::1 first while local servers listen on 127.0.0.1.
    usable.sort(key=lambda address: ":" in address)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=usable[0])


def pinned(target: Target) -> tuple[str, dict[str, str], dict[str, str]]:
    """How an httpx request reaches `target` at its checked address and nowhere else: the URL to
    that address, the Host header, and the extension that keeps the name for TLS (SNI and the
    certificate check)."""
    host = f"[{target.address}]" if ":" in target.address else target.address
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    url = f"{target.scheme}://{host}:{target.port}{target.path}"
    return url, {"Host": host_header}, {"sni_hostname": target.host}
