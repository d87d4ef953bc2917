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
