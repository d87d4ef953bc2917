"""The local API Gateway double at the HTTP level: bodies as API Gateway takes them, and a server
that neither drops nor hangs on awkward clients."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from local import gateway as gateway_module
from local.emulator import free_port
from local.gateway import Gateway


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gateway, list[dict[str, Any]]]]:
    monkeypatch.setattr(gateway_module, "BODY_TIMEOUT_SECONDS", 1)
    events: list[dict[str, Any]] = []

    def invoke(_: str, event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 200, "body": json.dumps({"ok": True})}

    server = Gateway(invoke, "127.0.0.1", free_port())
    server.start()
    yield server, events
    server.stop()


def raw(server: Gateway, request: bytes) -> bytes:
    host, port = server.server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_an_invalid_utf8_body_reaches_the_function_base64_encoded(echo) -> None:
    server, events = echo
    body = b'{"prompt": "\xff\xfe"}'
    head = "POST /api/v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    reply = raw(server, head.encode() + b"Connection: close\r\n\r\n" + body)
    assert reply.startswith(b"HTTP/1.1 200")
    assert events[-1]["isBase64Encoded"] is True
    assert base64.b64decode(events[-1]["body"]) == body


def test_a_chunked_body_is_read(echo) -> None:
    server, events = echo
    request = (
        b"POST /api/v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
    )
    assert raw(server, request).startswith(b"HTTP/1.1 200")
    assert events[-1]["body"] == '{"a": 1}'


def test_a_body_shorter_than_its_content_length_gets_400(echo) -> None:
    server, events = echo
    request = b"POST /api/v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    request += b"Content-Length: 100\r\n\r\n{}"
    host, port = server.server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)  # and keep the connection open, sending nothing more
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400")
    assert not events


def test_a_body_over_10_mb_gets_413(echo) -> None:
    server, events = echo
    request = b"POST /api/v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 10485761\r\nConnection: close\r\n\r\n"
    assert raw(server, request).startswith(b"HTTP/1.1 413")
    assert not events


def test_many_simultaneous_connections_are_all_served(echo) -> None:
    server, _ = echo
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with ThreadPoolExecutor(64) as pool:
        replies = list(pool.map(lambda _: raw(server, request), range(200)))
    assert all(r.startswith(b"HTTP/1.1 200") for r in replies)


def test_a_few_requests_run_at_once_and_the_rest_wait_their_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every emulated function shares one core (the GIL): 20 api invocations at once submitted no
    faster than a few, and took the dispatchers' and workers' turns (a burst's workflows started
    at 6.9/s instead of DISPATCH_RATE_PER_SECOND while it arrived)."""
    import threading
    import time

    running, peak, lock = [0], [0], threading.Lock()

    def invoke(_: str, event: dict[str, Any]) -> dict[str, Any]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return {"statusCode": 200, "body": "{}"}

    server = Gateway(invoke, "127.0.0.1", free_port())
    server.start()
    try:
        request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        with ThreadPoolExecutor(20) as pool:
            replies = list(pool.map(lambda _: raw(server, request), range(60)))
    finally:
        server.stop()
    assert all(r.startswith(b"HTTP/1.1 200") for r in replies)
    assert peak[0] == gateway_module.WORKERS <= 8
