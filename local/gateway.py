"""A test double of API Gateway HTTP API: turns HTTP requests on 127.0.0.1 into payload v2.0
events for the api function, and its replies back into HTTP. Nothing more."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("local.gateway")

TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")


def http_api_event(method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as API Gateway builds it."""
    url = urlsplit(target)
    headers = {k.lower(): v for k, v in headers.items()}
    query: dict[str, str] = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value  # v2 joins repeats with commas
    binary = bool(body) and not (headers.get("content-type", "").startswith(TEXT_TYPES) and _is_utf8(body))
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path,
        "rawQueryString": url.query,
        "cookies": [c.strip() for c in headers.get("cookie", "").split(";") if c.strip()] or None,
        "headers": headers,
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": (base64.b64encode(body).decode() if binary else body.decode(errors="surrogateescape"))
        if body
        else None,
        "isBase64Encoded": binary,
    }


MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit: larger requests get 413
BODY_TIMEOUT_SECONDS = 10  # a client that sends less than its Content-Length gets a 400, not a hung thread
# Requests served at once; more wait their turn (the listen backlog is deep). The emulated functions
# share one core (the GIL), which each runnable thread takes in turn: 20 api invocations at once
# submitted no faster than 6, and starved the dispatchers and workers of a burst (`make load`:
# workflows started at 6.9/s instead of 8 while 1,000 jobs arrived; 7.8/s with 6).
WORKERS = 6


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False  # API Gateway passes such a body base64-encoded
    return True


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def read_body(headers: Any, rfile: Any) -> bytes:
    """The request body: Content-Length or chunked, at most MAX_BODY bytes."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks, size = [], 0
        while True:
            line = rfile.readline(1024)
            if not line:
                raise BadRequest(400, "Bad Request")
            length = int(line.split(b";")[0].strip() or b"0", 16)
            if length == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            size += length
            if size > MAX_BODY:
                raise BadRequest(413, "Request Entity Too Large")
            chunk = rfile.read(length)
            rfile.readline(8)
            if len(chunk) < length:
                raise BadRequest(400, "Bad Request")
            chunks.append(chunk)
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        raise BadRequest(400, "Bad Request") from None
    if length > MAX_BODY:
        raise BadRequest(413, "Request Entity Too Large")
    body = rfile.read(length) if length > 0 else b""
    if len(body) < length:
        raise BadRequest(400, "Bad Request")
    return body


class _Server(ThreadingHTTPServer):
    """A bounded pool of worker threads and a deep listen backlog (the stdlib's is 5)."""

    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="gateway")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(self.process_request_thread, request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


PREFLIGHT_HEADERS = {
    "access-control-allow-methods": "GET,POST",
    "access-control-allow-headers": "authorization,content-type,idempotency-key",
    "access-control-max-age": "3600",
}


def cors_origin(origin: str | None) -> str | None:
    """The request's origin if CORS_ALLOWED_ORIGINS (comma-separated; the deployed context option
    corsAllowedOrigins) allows it; CORS is off when that is empty."""
    allowed = {o.strip() for o in os.environ.get("CORS_ALLOWED_ORIGINS", "").split(",") if o.strip()}
    return origin if origin and origin in allowed else None


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin,
        "access-control-expose-headers": "location,retry-after",
        "vary": "origin",
    }


UNAUTHORIZED = {"statusCode": 401, "body": '{"message":"Unauthorized"}'}


class Gateway:
    def __init__(
        self,
        invoke: Callable[[str, Any], Any],
        host: str,
        port: int,
        function: str = "api",
        authorizer: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        function_urls: dict[str, str] | None = None,
    ) -> None:
        """`authorizer(event)`: None for a route without one; else a simple response, whose
        context lands in requestContext.authorizer.lambda as API Gateway puts it.
        `function_urls`: paths served by another function, as its Lambda function URL does when
        deployed (one port here, so a base URL serves both): no authorizer, no CORS."""
        urls = dict(function_urls or {})
        gateway = self
        self.served: Counter[int] = Counter()  # requests answered, by status code (e.g. for make fuzz)
        self._served_lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            timeout = BODY_TIMEOUT_SECONDS

            def _serve(self) -> None:
                try:
                    body = read_body(self.headers, self.rfile)
                except (BadRequest, TimeoutError, ValueError) as exc:
                    status, message = (exc.status, exc.message) if isinstance(exc, BadRequest) else (400, "Bad Request")
                    self.close_connection = True
                    gateway._respond(self, {"statusCode": status, "body": json.dumps({"message": message})})
                    return
                event = http_api_event(self.command, self.path, dict(self.headers), body, self.client_address[0])
                started = time.monotonic()
                origin = cors_origin(event["headers"].get("origin"))
                try:
                    if event["rawPath"] in urls:
                        origin = None
                        reply = invoke(urls[event["rawPath"]], event)
                    elif origin and self.command == "OPTIONS":  # a preflight: API Gateway answers it
                        reply = {"statusCode": 204, "headers": dict(PREFLIGHT_HEADERS)}
                    else:
                        reply = gateway._authorize(event, authorizer) or invoke(function, event)
                except Exception:
                    log.exception("api function crashed")
                    reply = {"statusCode": 502, "body": '{"message":"Internal Server Error"}'}
                if origin:
                    reply["headers"] = dict(reply.get("headers") or {}, **cors_headers(origin))
                gateway._respond(self, reply)
                log.info(
                    "%s %s -> %s (%.0f ms)",
                    self.command,
                    self.path,
                    reply.get("statusCode"),
                    (time.monotonic() - started) * 1000,
                )

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_TRACE = do_QUERY = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server((host, port), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _authorize(event: dict[str, Any], authorizer: Callable | None) -> dict[str, Any] | None:
        """What API Gateway does before the integration: a reply if the request is refused."""
        if authorizer is None:
            return None
        answer = authorizer(event)
        if answer is None:
            return None
        if answer.get("missing"):  # no identity source: API Gateway's own 401, no authorizer call
            return dict(UNAUTHORIZED)
        if not answer.get("isAuthorized"):
            return {"statusCode": 403, "body": '{"message":"Forbidden"}'}
        event["requestContext"]["authorizer"] = {"lambda": answer.get("context") or {}}
        return None

    def _respond(self, request: BaseHTTPRequestHandler, reply: dict[str, Any]) -> None:
        with self._served_lock:
            self.served[int(reply.get("statusCode", 200))] += 1
        body = reply.get("body") or ""
        data = base64.b64decode(body) if reply.get("isBase64Encoded") else body.encode()
        request.send_response(int(reply.get("statusCode", 200)))
        headers = {k.lower(): v for k, v in (reply.get("headers") or {}).items()}
        headers.setdefault("content-type", "application/json")
        headers["content-length"] = str(len(data))
        for key, value in headers.items():
            request.send_header(key, value)
        for cookie in reply.get("cookies") or []:
            request.send_header("set-cookie", cookie)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)
