"""HTTP details of the double: replies, problem+json bodies, header parsing, rate windows and the
request handler (which hands every request to ReplicateDouble.handle)."""

from __future__ import annotations

import json
import logging
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from local.replicate_double.faults import Fault
from local.replicate_double.net import QuietHandler

log = logging.getLogger("local.replicate_double")

# Titles and details of 401, 402, 422 and 429 are as the real API's replies quoted in public logs
# (the 402 body is not verified by us; the real 404 seems to carry no title). The others are the
# double's own wording: every problem here has title, detail and status, as docs/provider.md states.
PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("Bad request", "The request could not be understood."),
    401: ("Unauthenticated", "You did not pass a valid authentication token"),
    402: (
        "Insufficient credit",
        "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing"
        " to purchase credit. Once you purchase credit, please wait a few minutes before trying again.",
    ),
    404: ("Not found", "The requested resource could not be found."),
    405: ("Method not allowed", "The method is not allowed for the requested URL."),
    422: ("Input validation failed", "- input: the input is invalid\n"),
    429: ("Request was throttled", "Request was throttled. Your rate limit resets in ~{n}s."),
    500: ("Internal server error", "An unexpected error occurred."),
    502: ("Bad gateway", "The server received an invalid response from an upstream server."),
    503: ("Service unavailable", "The service is temporarily unavailable. Please try again later."),
    504: ("Gateway timeout", "The upstream server did not answer in time."),
}


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-serialisable, or bytes/str with content_type
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None  # server-sent events: written as produced, then close


class RateWindow:
    """Requests admitted in the last minute (and second): a rolling window, like "600 per minute"."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def admit(self, now: float, per_minute: int | None, per_second: int | None = None) -> tuple[bool, int, int]:
        """(admitted, remaining this minute, seconds until a slot frees up)."""
        while self.times and self.times[0] <= now - 60:
            self.times.popleft()
        if per_second is not None:
            recent = [t for t in self.times if t > now - 1]
            if len(recent) >= per_second:
                return False, max(0, (per_minute or 0) - len(self.times)), 1
        if per_minute is not None and len(self.times) >= per_minute:
            if per_minute <= 0:
                return False, 0, 60
            # A slot frees up when the request that filled the window leaves it.
            filler = self.times[len(self.times) - per_minute]
            return False, 0, max(1, math.ceil(filler + 60 - now))
        self.times.append(now)
        remaining = (per_minute - len(self.times)) if per_minute is not None else 1_000_000
        return True, remaining, max(1, math.ceil(self.times[0] + 60 - now))


def json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


def problem(status: int, *, title: str | None = None, detail: str | None = None, **extra: Any) -> Reply:
    default_title, default_detail = PROBLEMS.get(status, ("Error", "An error occurred."))
    body = {"title": title or default_title, "detail": detail or default_detail, "status": status, **extra}
    return Reply(status, body, content_type="application/problem+json")


class Refused(Exception):
    """A create refused while reading its options: `reply` is the answer."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def invalid(kind: str, where: str, description: str) -> Reply:
    return validation_problem([{"type": kind, "field": where, "description": description}])


def validation_problem(invalid_fields: list[dict[str, str]]) -> Reply:
    detail = "".join(
        f"- {f['field']}: {f['description']}\n" if f["field"] else f"- {f['description']}\n" for f in invalid_fields
    )
    return problem(422, detail=detail, invalid_fields=invalid_fields)


_CLOUDFLARE_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


def scripted_problem(fault: Fault) -> Reply:
    assert fault.status
    status = fault.status
    if fault.mode == "html":  # what an edge proxy sends for 502/503/504: not JSON at all
        page = _CLOUDFLARE_PAGE.format(status=status, reason=HTTPStatus(status).phrase)
        reply = Reply(status, page, content_type="text/html")
    elif status == 422:
        detail = fault.detail or "input.prompt: scripted validation failure"
        reply = validation_problem([{"type": "invalid", "field": "input.prompt", "description": detail}])
    elif status == 429:
        reply = problem(429, detail=fault.detail or PROBLEMS[429][1].format(n=fault.retry_after or 1))
    else:
        reply = problem(status, detail=fault.detail)
    if fault.retry_after:
        reply.headers["Retry-After"] = str(fault.retry_after)
    return reply


def prefer_wait(header: str) -> tuple[float, str] | None:
    """Prefer: wait (60 s) or wait=N (1-60). Other or out-of-range values are ignored, as
    preferences a server does not understand are (RFC 7240); the real API's handling is unverified."""
    for preference in header.split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not value:
            return 60.0, "wait"
        if value.strip().isdigit() and 1 <= int(value) <= 60:
            return float(value), f"wait={int(value)}"
    return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_cancel_after(header: str | None) -> float | None:
    """Cancel-After: a duration like "30s", "5m", "1h30m" (or bare seconds)."""
    if header is None:
        return None
    text = header.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if text and re.fullmatch(f"(?:{_DURATION.pattern})+", text):
        return sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))
    # Unverified: the real API's answer to a malformed header.
    raise Refused(problem(400, detail=f"Invalid Cancel-After header: {header!r}"))


def sse(event: str, data: str, number: int) -> bytes:
    lines = "".join(f"data: {line}\n" for line in (data.split("\n") or [""]))
    return f"event: {event}\nid: {number}\n{lines}\n".encode()


class ApiHandler(QuietHandler):
    server: Any

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        double = self.server.owner  # the ReplicateDouble
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = double.handle(self.command, self.path, headers, body)
        except Exception:
            log.exception("the double failed on %s %s", self.command, self.path)
            reply = problem(500, detail="The Replicate double itself failed: see its log.")
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.stream is not None:
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for chunk in reply.stream:
                self.wfile.write(chunk)
                self.wfile.flush()
            return
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif isinstance(reply.body, str):
            payload = reply.body.encode()
        else:
            payload = json.dumps(reply.body, separators=(",", ":")).encode()
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
