"""SSRF: which webhook URLs may be called, and that a delivery connects to the address checked."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared import safe_url, webhook_delivery


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/hook",
        "https://172.16.3.4/hook",
        "https://192.168.1.1/hook",
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "https://0.0.0.0/hook",
        "http://example.com/hook",  # not https
        "https://user:pw@example.com/hook",
    ],
)
def test_refused_without_the_private_allowance(url):
    with pytest.raises(safe_url.UnsafeUrl):
        safe_url.check(url)


@pytest.mark.parametrize(
    "address",
    [
        # IPv6 forms that carry an IPv4 address: decided by that address
        "::ffff:169.254.169.254",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix: 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64: 127.0.0.1
        "64:ff9b::a00:1",  # NAT64: 10.0.0.1
        "64:ff9b::6440:1",  # NAT64: 100.64.0.1 (CGNAT)
        "2002:a9fe:a9fe::1",  # 6to4: 169.254.169.254
        "2002:c0a8:101::1",  # 6to4: 192.168.1.1
        "2002:7f00:1::1",  # 6to4: 127.0.0.1
        # ... or refused as a whole range: where the IPv4 address sits is not fixed, or nothing
        # public is ever reached that way
        "64:ff9b:1::a9fe:a9fe",  # NAT64 local-use prefix (RFC 8215)
        "64:ff9b:1:a9fe:a9:fe00::",  # the same address under a /48 of that prefix
        "64:ff9b:1::808:808",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "2001:0:a9fe:a9fe::5601:5601",  # Teredo, server 169.254.169.254 and client 169.254.169.254
        "2001:0:808:808::f7f7:f7f7",  # Teredo, even with public server and client
        "::a9fe:a9fe",  # IPv4-compatible (deprecated): 169.254.169.254
        "::7f00:1",
        "::808:808",
        "::ffff:0:a9fe:a9fe",  # IPv4-translated (SIIT)
        # IPv6 that Python's ipaddress may call global, but not public unicast
        "fec0::1",  # site-local (deprecated)
        "3fff::1",  # documentation (RFC 9637)
        "5f00::1",  # SRv6 segment identifiers (RFC 9602)
        "ff0e::1",  # multicast
        "2001:db8::1",
        # IPv4 that Python's ipaddress may call global, but not public unicast
        "100.64.0.1",  # carrier-grade NAT shared space
        "100.127.255.254",
        "192.0.0.9",  # IETF protocol assignments
        "192.0.0.10",
        "192.0.0.170",
        "192.0.2.1",  # documentation
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",  # benchmarking
        "198.19.255.254",
        "192.88.99.1",  # 6to4 relay anycast (deprecated)
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "0.0.0.0",  # "this network"
        "0.1.2.3",
    ],
)
def test_addresses_that_are_not_public_unicast_are_refused(address):
    assert not safe_url.is_public(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "100.63.255.255",  # just below carrier-grade NAT
        "100.128.0.1",  # just above
        "198.17.255.255",  # just below benchmarking
        "198.20.0.1",  # just above
        "192.0.1.1",  # just above 192.0.0.0/24
        "223.255.255.254",  # just below multicast
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",  # IPv4-mapped public address
        "64:ff9b::808:808",  # NAT64 of a public address
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_public_unicast_addresses_are_allowed(address):
    assert safe_url.is_public(address)


@pytest.mark.parametrize(
    "url",
    [
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "https://[2002:a9fe:a9fe::1]/latest/meta-data/",
        "https://[::a9fe:a9fe]/latest/meta-data/",
        "https://100.64.0.1/hook",
        "https://198.18.0.1/hook",
    ],
)
def test_urls_to_embedded_or_special_addresses_are_refused(url):
    with pytest.raises(safe_url.UnsafeUrl, match="private"):
        safe_url.check(url)


def test_a_name_resolving_to_a_nat64_form_of_the_metadata_address_is_refused(monkeypatch):
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: ["64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1"])
    with pytest.raises(safe_url.UnsafeUrl, match="private"):
        safe_url.check("https://hooks.example.test/h")


def test_a_name_resolving_only_to_private_addresses_is_refused(monkeypatch):
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: ["10.1.1.1", "fd00::1"])
    with pytest.raises(safe_url.UnsafeUrl, match="private"):
        safe_url.check("https://hooks.example.test/h")


def test_a_name_with_a_public_address_is_pinned_to_it(monkeypatch):
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: ["10.1.1.1", "93.184.216.34"])
    target = safe_url.check("https://hooks.example.test:8443/h?x=1")
    assert (target.host, target.port, target.path, target.address) == (
        "hooks.example.test",
        8443,
        "/h?x=1",
        "93.184.216.34",
    )


def test_a_name_that_does_not_resolve_is_refused(monkeypatch):
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: [])
    with pytest.raises(safe_url.UnsafeUrl, match="resolve"):
        safe_url.check("https://nowhere.example.test/h")


def test_the_allowance_permits_http_and_loopback():
    target = safe_url.check("http://127.0.0.1:8080/h", allow_private=True)
    assert (target.scheme, target.address, target.port) == ("http", "127.0.0.1", 8080)


def test_delivery_connects_to_the_checked_address_with_the_name_as_host(monkeypatch):
    """The name resolves once, at the check; the POST goes to that address, whatever DNS says later."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers["Host"])
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        monkeypatch.setattr(safe_url, "resolve", lambda host, p: ["127.0.0.1"])
        target = safe_url.check(f"http://hooks.example.test:{port}/h", allow_private=True)
        monkeypatch.setattr(safe_url, "resolve", lambda host, p: ["10.9.9.9"])  # "rebinding": not consulted
        assert webhook_delivery.post(target, {}, "{}") == "204"
        assert seen == [f"hooks.example.test:{port}"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        ("500", True),
        ("503", True),
        ("429", True),
        ("timeout", True),
        ("connection_error", True),
        ("410", False),
        ("404", False),
        ("307", False),
        ("refused: must be an https URL", False),
    ],
)
def test_what_is_retried(status, retry):
    assert webhook_delivery.retryable(status) is retry


def test_an_ipv4_address_is_connected_to_before_an_ipv6_one(monkeypatch):
    """Lambda outside a VPC has no IPv6 route; a laptop resolves localhost to ::1 first."""
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: ["2606:2800:220:1::1", "93.184.216.34"])
    assert safe_url.check("https://example.test/").address == "93.184.216.34"
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: ["::1", "127.0.0.1"])
    assert safe_url.check("https://localhost/", allow_private=True).address == "127.0.0.1"
