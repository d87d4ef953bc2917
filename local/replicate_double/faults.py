"""Scripted misbehaviour: what the next matching create (or the prediction it makes) does wrong.

    double.script("lighthouse", Fault.http(503))                 # next create for that prompt: 503
    double.script("lighthouse", Fault.slow(3), Fault.drop_webhooks("completed"))   # both, one create
    double.script(lambda req: req.model == SDXL, Fault.fail("CUDA error"), times=2)

One `script()` call is consumed by one matching create (or `times` of them); all its faults apply
to that create together. Scripts are tried in the order they were added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

WEBHOOK_EVENTS = ("start", "output", "logs", "completed")


@dataclass(frozen=True)
class CreateRequest:
    """What a script's predicate sees: one create call, after auth and input validation."""

    route: str  # "model" | "version" | "deployment"
    model: str  # owner/name
    version: str
    input: Mapping[str, Any]  # with the model's defaults applied
    body: Mapping[str, Any]  # the JSON body as sent
    headers: Mapping[str, str]  # lower-cased names

    @property
    def prompt(self) -> str:
        return str(self.input.get("prompt") or "")


@dataclass(frozen=True)
class Fault:
    """One misbehaviour. Build them with the class methods below, not directly."""

    kind: str
    status: int | None = None
    seconds: float | None = None
    starting_seconds: float | None = None
    error: str | None = None
    logs: str | None = None
    detail: str | None = None
    retry_after: int | None = None
    count: int = 1
    mode: str | None = None
    url: str | None = None
    size: int | None = None
    declare_length: bool = True
    events: tuple[str, ...] = ()

    # ---- the create call itself -------------------------------------------------------------
    @classmethod
    def http(
        cls, status: int, *, detail: str | None = None, retry_after: int | None = None, html: bool = False
    ) -> Fault:
        """The create answers this HTTP error and no prediction is made (401, 402, 404, 422, 429,
        500, 502, 503...), with a problem+json body, or with an edge proxy's HTML page if html=True.
        A 429 carries `Retry-After` (default 1 s; pass 0 to leave it out)."""
        if not 400 <= status < 600:
            raise ValueError(f"not an error status: {status}")
        if status == 429 and retry_after is None:
            retry_after = 1
        return cls(
            "http",
            status=status,
            detail=detail,
            retry_after=retry_after or None,
            mode="html" if html else None,
        )

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """The create answers only after `seconds`, but the prediction IS created at once and runs:
        a caller whose client times out meanwhile does not know it exists (an ambiguous create).
        Combined with `http(...)`, the late answer is that error and no prediction is made."""
        return cls("hang", seconds=seconds)

    # ---- the prediction's life --------------------------------------------------------------
    @classmethod
    def fail(cls, error: str = "Prediction failed for an unknown reason.", *, logs: str | None = None) -> Fault:
        """The prediction runs, then ends `failed` with this `error` (and these extra log lines)."""
        return cls("fail", error=error, logs=logs)

    @classmethod
    def cancel(cls) -> Fault:
        """The prediction is canceled provider-side halfway through processing (`canceled`)."""
        return cls("cancel")

    @classmethod
    def abort(cls) -> Fault:
        """The prediction never starts and ends `aborted` (what a Cancel-After deadline does to a
        prediction still queued). The 1.0.7 client cannot parse that status: get() raises."""
        return cls("abort")

    @classmethod
    def slow(cls, seconds: float, *, starting: float | None = None) -> Fault:
        """Processing takes `seconds` (and `starting`, if given, the time spent queued)."""
        return cls("slow", seconds=seconds, starting_seconds=starting)

    # ---- what the outputs look like ---------------------------------------------------------
    @classmethod
    def foreign_host(cls, url: str = "https://evil.example.com/x.webp") -> Fault:
        """Every output URL is this one, on a host outside any allowlist. It is never served."""
        return cls("output", mode="foreign", url=url)

    @classmethod
    def insecure_url(cls) -> Fault:
        """Output URLs use http:// (served, over plain HTTP, by the double: a client that accepts
        them really downloads the file)."""
        return cls("output", mode="http")

    @classmethod
    def corrupt_image(cls) -> Fault:
        """Output files are served with an image content type but are not decodable images."""
        return cls("output", mode="corrupt")

    @classmethod
    def large_file(cls, size: int, *, declare_length: bool = True) -> Fault:
        """Output files are `size` bytes (a valid image padded at the end). With
        declare_length=False they are sent chunked, without Content-Length."""
        return cls("output", mode="large", size=size, declare_length=declare_length)

    # ---- polling ----------------------------------------------------------------------------
    @classmethod
    def get_errors(cls, status: int = 503, count: int = 1, *, retry_after: int | None = None) -> Fault:
        """The next `count` GET /v1/predictions/{id} of this prediction answer `status`. The client
        retries GETs on 429/503/504 by itself (up to 10 tries), not on 500/502."""
        return cls("get_errors", status=status, count=count, retry_after=retry_after)

    # ---- webhooks -----------------------------------------------------------------------------
    @classmethod
    def drop_webhooks(cls, *events: str) -> Fault:
        """These webhook events (all if none given) are never delivered, retries included."""
        return cls("webhook", mode="drop", events=_events(events))

    @classmethod
    def duplicate_webhook(cls, event: str = "completed", copies: int = 2) -> Fault:
        """This event is delivered `copies` times, with the same webhook-id (as a retry would be)."""
        return cls("webhook", mode="duplicate", events=_events((event,)), count=copies)

    @classmethod
    def forged_webhook(cls, how: str = "signature", *events: str) -> Fault:
        """These events (all if none given) arrive forged: how="signature" signs them with another
        secret; how="timestamp" signs them correctly but 10 minutes in the past (a replay)."""
        if how not in ("signature", "timestamp"):
            raise ValueError("how must be 'signature' or 'timestamp'")
        return cls("webhook", mode=f"forged_{how}", events=_events(events))

    @classmethod
    def delay_webhooks(cls, seconds: float, *events: str) -> Fault:
        """These events (all if none given) are delivered `seconds` late."""
        return cls("webhook", mode="delay", seconds=seconds, events=_events(events))

    def webhook_applies(self, event: str) -> bool:
        return self.kind == "webhook" and event in self.events


def _events(events: tuple[str, ...]) -> tuple[str, ...]:
    unknown = set(events) - set(WEBHOOK_EVENTS)
    if unknown:
        raise ValueError(f"unknown webhook events: {sorted(unknown)}")
    return events or WEBHOOK_EVENTS


Matcher = str | Callable[[CreateRequest], bool] | None


@dataclass
class Script:
    """A registered script; `used_by` lists the prediction ids (or None for refused creates) it hit."""

    match: Matcher
    faults: tuple[Fault, ...]
    remaining: int
    used_by: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        http = [f for f in self.faults if f.kind == "http"]
        if len(http) > 1:
            raise ValueError("at most one http fault per script")
        if http and any(f.kind not in ("http", "hang") for f in self.faults):
            raise ValueError("an http fault refuses the create: only hang() can go with it")

    def matches(self, request: CreateRequest) -> bool:
        if self.remaining <= 0:
            return False
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return self.match in request.prompt
        return bool(self.match(request))

    def first(self, kind: str) -> Fault | None:
        return next((f for f in self.faults if f.kind == kind), None)
