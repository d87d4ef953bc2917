"""Public hosts played by loopback servers, for what the service does on the Internet with the
private allowance off (no CLIENT_WEBHOOK_ALLOW_PRIVATE).

Three seams, each the narrowest that does the job, and none in the code under test:
- DNS: shared/safe_url.py `resolve` (the SSRF check's resolver) answers a public address for a
  test name, so the real check passes it and the delivery pins that address;
- the network: httpcore's `connect_tcp` (where every httpx client opens its socket) sends a
  connection to a fake host's address or name, and port, to its loopback server instead; any
  other connection goes where it was going;
- TLS: the fake hosts' certificates come from a local CA that httpx trusts (certifi's bundle, its
  default, and SSL_CERT_FILE for clients that read the environment), so the real certificate and
  name checks run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import pytest
from httpcore._backends.sync import SyncBackend

from local.replicate_double.net import QuietHandler, ThreadedServer, TLSServer, make_tls_files, server_context
from shared import safe_url


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Host:
    """A fake host: records every request and answers each with `status`, `headers`, `body`."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    requests: list[Request] = field(default_factory=list)
    server: ThreadedServer | None = None


class Recording(QuietHandler):
    def answer(self) -> None:
        host: Host = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        host.requests.append(Request(self.command, self.path, dict(self.headers), self.rfile.read(length)))
        self.send_response(host.status)
        for name, value in host.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(host.body)))
        self.end_headers()
        self.wfile.write(host.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer


class FakeInternet:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
        self.directory = directory
        self.names: dict[str, str] = {}  # DNS: name -> public address
        self.routes: dict[tuple[str, int], int] = {}  # (address or name, port) -> loopback port
        self.hosts: list[Host] = []
        self.bundle = directory / "trusted.pem"
        self.bundle.write_bytes(b"")

        real_resolve, real_connect = safe_url.resolve, SyncBackend.connect_tcp

        def resolve(host: str, port: int) -> list[str]:
            return [self.names[host]] if host in self.names else real_resolve(host, port)

        def connect_tcp(backend: SyncBackend, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
            if local := self.routes.get((host, port)):
                host, port = "127.0.0.1", local
            return real_connect(backend, host, port, *args, **kwargs)

        monkeypatch.setattr(safe_url, "resolve", resolve)
        monkeypatch.setattr(SyncBackend, "connect_tcp", connect_tcp)
        monkeypatch.setattr(certifi, "where", lambda: str(self.bundle))
        monkeypatch.setenv("SSL_CERT_FILE", str(self.bundle))

    def https(self, name: str, address: str, port: int = 443, **answer: Any) -> Host:
        """A host named `name` at the public `address`, serving https (a certificate for `name`)."""
        folder = self.directory / name
        folder.mkdir()
        ca, cert, key = make_tls_files(folder, name)
        with self.bundle.open("ab") as bundle:
            bundle.write(ca.read_bytes())
        host = Host(**answer)
        server = TLSServer("127.0.0.1", 0, Recording, host, context=server_context(cert, key))
        self.names[name] = address
        self.routes[(address, port)] = self.routes[(name, port)] = server.port
        return self._started(host, server)

    def http(self, address: str, port: int = 80, **answer: Any) -> Host:
        """A host at `address` serving plain http (e.g. standing in for 169.254.169.254)."""
        host = Host(**answer)
        server = ThreadedServer("127.0.0.1", 0, Recording, host)
        self.routes[(address, port)] = server.port
        return self._started(host, server)

    def _started(self, host: Host, server: ThreadedServer) -> Host:
        host.server = server
        server.start(f"fake-internet-{server.port}")
        self.hosts.append(host)
        return host

    def close(self) -> None:
        for host in self.hosts:
            if host.server:
                host.server.stop()
