"""ReplicateDouble: the Replicate HTTP API on 127.0.0.1, in-process, for tests and `make dev`.

Behaviour follows docs/provider.md. Where the real API's behaviour is unverified, the
choice made here is marked "unverified" in a comment.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import secrets
import shutil
import string
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local.replicate_double.api import (
    PROBLEMS,
    ApiHandler,
    RateWindow,
    Refused,
    Reply,
    invalid,
    json_body,
    parse_cancel_after,
    prefer_wait,
    problem,
    scripted_problem,
    sse,
    validation_problem,
)
from local.replicate_double.faults import WEBHOOK_EVENTS, CreateRequest, Fault, Matcher, Script
from local.replicate_double.files import FileHandler, FileRequest, FileStore, StoredFile
from local.replicate_double.models import (
    CONTENT_TYPES,
    MODELS,
    VERSIONS,
    InputInvalid,
    Model,
    render,
    seed_of,
    tqdm_line,
)
from local.replicate_double.net import ThreadedServer, TLSServer, make_tls_files, server_context
from local.replicate_double.webhooks import WebhookDelivery, WebhookSender, new_secret

log = logging.getLogger("local.replicate_double")

DEFAULT_TOKEN = "r8_double0000000000000000000000000000000"
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Replicate ids: 26 lower-case base32 characters
_TOKEN_ALPHABET = string.ascii_letters + string.digits


@dataclass
class PredictionRecord:
    """The double's view of one prediction (read it; the double updates it under its lock)."""

    id: str
    seq: int
    model: str
    version: str
    input: dict[str, Any]
    route: str  # "model" | "version" | "deployment"
    deployment: str | None
    body: dict[str, Any]  # the create body as sent
    headers: dict[str, str]  # the create request headers (lower-cased)
    faults: tuple[Fault, ...]
    starting_seconds: float
    processing_seconds: float
    webhook: str | None
    webhook_events_filter: tuple[str, ...]
    cancel_after: float | None  # seconds, from the Cancel-After header
    created_at: float  # unix time
    status: str = "starting"
    logs: str = ""
    output: Any = None
    error: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    data_removed: bool = False
    cancel_requested: bool = False  # POST .../cancel was called
    get_calls: int = 0
    statuses: list[str] = field(default_factory=lambda: ["starting"])  # every status it went through
    # internals
    _model: Model | None = None
    _deadline: float | None = None  # monotonic, from cancel_after
    _expires: float | None = None  # monotonic time of data removal
    _get_errors_left: int = 0
    _last_throttled_webhook: float | None = None
    _sender: WebhookSender | None = None
    _file_token: str = ""

    def fault(self, kind: str) -> Fault | None:
        return next((f for f in self.faults if f.kind == kind), None)

    @property
    def webhooks_done(self) -> bool:
        """True once the prediction ended and each of its webhooks was delivered, dropped or
        given up on (retries included): from then on, no more will come."""
        return self._sender is None or self._sender.done.is_set()


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int


class ReplicateDouble:
    """A faithful stand-in for api.replicate.com plus its file CDN. See the package docstring."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        files_port: int = 0,
        files_host: str = "localhost",
        starting_seconds: float = 0.2,
        processing_seconds: float = 1.0,
        create_limit_per_minute: int | None = 600,
        create_limit_per_second: int | None = None,
        other_limit_per_minute: int | None = 3000,
        send_retry_after: bool = True,
        webhook_secret: str | None = None,
        webhook_min_interval: float = 0.5,
        webhook_retries: int = 4,
        webhook_backoff: float = 4.0,
        webhook_timeout: float = 5.0,
        webhook_verify: bool | str = True,
        require_https_webhooks: bool = False,
        file_ttl_seconds: float = 3600.0,
        list_page_size: int = 100,
        deployments: dict[str, str] | None = None,
    ) -> None:
        self.token = token
        self.host = host
        self.files_host = files_host
        self._port, self._files_port = port, files_port
        self.starting_seconds = starting_seconds
        self.processing_seconds = processing_seconds
        self.create_limit_per_minute = create_limit_per_minute
        self.create_limit_per_second = create_limit_per_second
        self.other_limit_per_minute = other_limit_per_minute
        # Whether the real API sends Retry-After with its 429s is unverified; set False to test a
        # caller that must cope without it (it can parse "resets in ~Ns" from the detail).
        self.send_retry_after = send_retry_after
        self.webhook_secret = webhook_secret or new_secret()
        self.webhook_min_interval = webhook_min_interval
        # Defaults: tries 4, 8, 16 and 32 s after the first, so the last is about a minute after
        # completion, as on the real API.
        self.webhook_retries = webhook_retries
        self.webhook_backoff = webhook_backoff
        self.webhook_timeout = webhook_timeout
        self.webhook_verify = webhook_verify
        # The real API requires https webhooks; the double accepts http://127.0.0.1 for local use.
        self.require_https_webhooks = require_https_webhooks
        self.file_ttl_seconds = file_ttl_seconds
        self.list_page_size = list_page_size
        self.deployments = dict(deployments or {})  # "owner/name" -> model "owner/name"

        self.files = FileStore()
        self._cond = threading.Condition(threading.RLock())
        self._stopping = threading.Event()
        self._records: dict[str, PredictionRecord] = {}
        self._scripts: list[Script] = []
        self._seq = 0
        self._create_calls = 0
        self._requests: list[RequestRecord] = []
        self._deliveries: list[WebhookDelivery] = []
        self._create_window = RateWindow()
        self._other_window = RateWindow()
        self._threads: list[threading.Thread] = []
        self._api: ThreadedServer | None = None
        self._tls_files: TLSServer | None = None
        self._plain_files: ThreadedServer | None = None
        self._tmp: Path | None = None
        self.ca_file: Path | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ReplicateDouble:
        self._stopping.clear()
        self._tmp = Path(tempfile.mkdtemp(prefix="replicate-double-"))
        self.ca_file, cert, key = make_tls_files(self._tmp, self.files_host)
        self._api = ThreadedServer(self.host, self._port, ApiHandler, self)
        self._tls_files = TLSServer(self.host, self._files_port, FileHandler, self, context=server_context(cert, key))
        self._plain_files = ThreadedServer(self.host, 0, FileHandler, self)
        self._api.start("replicate-double-api")
        self._tls_files.start("replicate-double-files")
        self._plain_files.start("replicate-double-files-http")
        log.info("Replicate double on %s, files on %s", self.base_url, self.files_base_url)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
            senders = [r._sender for r in self._records.values() if r._sender]
        for server in (self._api, self._tls_files, self._plain_files):
            if server:
                server.stop()
        for sender in senders:
            sender.close()
        for thread in self._threads:
            thread.join(2)
        for sender in senders:
            sender.join(2)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> ReplicateDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- addresses -----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """REPLICATE_BASE_URL for the client (no /v1 suffix)."""
        assert self._api, "start() the double first"
        return f"http://{self.host}:{self._api.port}"

    @property
    def files_port(self) -> int:
        assert self._tls_files, "start() the double first"
        return self._tls_files.port

    @property
    def files_base_url(self) -> str:
        """Where output files are served, over HTTPS: trust `ca_file` to fetch them."""
        return f"https://{self.files_host}:{self.files_port}"

    @property
    def insecure_files_base_url(self) -> str:
        """The same files over plain HTTP (only Fault.insecure_url() hands such URLs out)."""
        assert self._plain_files, "start() the double first"
        return f"http://{self.files_host}:{self._plain_files.port}"

    # ---- inspection ----------------------------------------------------------------------------
    @property
    def predictions(self) -> dict[str, PredictionRecord]:
        """id -> record, oldest first (a copy of the mapping; records are live)."""
        with self._cond:
            return dict(self._records)

    @property
    def last_prediction(self) -> PredictionRecord | None:
        with self._cond:
            return next(reversed(self._records.values()), None)

    @property
    def create_calls(self) -> int:
        """Create requests received, refused ones (auth, limits, validation, faults) included."""
        with self._cond:
            return self._create_calls

    @property
    def requests(self) -> list[RequestRecord]:
        """Every API request answered, in order: (method, path, status)."""
        with self._cond:
            return list(self._requests)

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        with self._cond:
            return list(self._deliveries)

    @property
    def file_requests(self) -> list[FileRequest]:
        with self._cond:
            return list(self.files.requests)

    @property
    def pending_scripts(self) -> list[Script]:
        """Scripts not (fully) consumed yet."""
        with self._cond:
            return [s for s in self._scripts if s.remaining > 0]

    def prediction_json(self, prediction_id: str) -> dict[str, Any]:
        """The prediction as GET /v1/predictions/{id} returns it (without counting as a call)."""
        with self._cond:
            return self._public(self._records[prediction_id])

    def wait_until(self, check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        """Block until check() is truthy; it is re-evaluated, under the double's lock, on every
        change in the double and at least every 0.1 s. Returns what check() returned."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := check()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
                self._cond.wait(min(remaining, 0.1))
            return result

    def wait_for_status(self, prediction_id: str, *statuses: str, timeout: float = 5.0) -> PredictionRecord:
        """Block until the prediction has one of `statuses` (default: any terminal one)."""
        wanted = set(statuses or TERMINAL)

        def reached() -> PredictionRecord | None:
            record = self._records.get(prediction_id)
            return record if record and record.status in wanted else None

        return self.wait_until(reached, timeout, f"prediction {prediction_id} to be {'/'.join(sorted(wanted))}")

    def wait_for_webhooks(
        self, check: Callable[[list[WebhookDelivery]], bool], timeout: float = 5.0
    ) -> list[WebhookDelivery]:
        """Block until check(deliveries so far) is true; returns the deliveries."""
        self.wait_until(lambda: check(list(self._deliveries)), timeout, "webhooks")
        return self.webhook_deliveries

    # ---- scripting -----------------------------------------------------------------------------
    def script(self, match: Matcher, *faults: Fault, times: int = 1) -> Script:
        """Apply `faults` (together) to the next `times` creates that match: a substring of
        input["prompt"], a predicate on the CreateRequest, or None for any create."""
        script = Script(match, tuple(faults), times)
        with self._cond:
            self._scripts.append(script)
        return script

    def clear_scripts(self) -> None:
        with self._cond:
            self._scripts.clear()

    def expire(self, prediction_id: str) -> None:
        """Remove a finished prediction's data now, as Replicate does an hour after it ends."""
        with self._cond:
            record = self._records[prediction_id]
            if record.status not in TERMINAL:
                raise ValueError("only a finished prediction's data is removed")
            record._expires = time.monotonic()
            self._remove_data_if_due(record)
            self._cond.notify_all()

    # ---- HTTP: routing ---------------------------------------------------------------------------
    _ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
        (method, re.compile(pattern), name)
        for method, pattern, name in (
            ("POST", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions", "_create_for_model"),
            (
                "POST",
                r"/v1/deployments/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions",
                "_create_for_deployment",
            ),
            ("POST", r"/v1/predictions", "_create_for_version"),
            ("GET", r"/v1/predictions", "_list"),
            ("GET", r"/v1/predictions/(?P<id>[^/]+)", "_get"),
            ("POST", r"/v1/predictions/(?P<id>[^/]+)/cancel", "_cancel"),
            ("GET", r"/v1/webhooks/default/secret", "_secret"),
            ("GET", r"/v1/streams/(?P<id>[^/]+)", "_stream"),
            ("GET", r"/p/(?P<id>[^/]+)", "_web_page"),
        )
    )
    _OPEN = frozenset({"_stream", "_web_page"})  # reached through URLs handed out, without the token

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        path, _, query = target.partition("?")
        matched = [(m, r.fullmatch(path), n) for m, r, n in self._ROUTES]
        matched = [(m, found, n) for m, found, n in matched if found]
        route = next(((found, n) for m, found, n in matched if m == method), None)
        if route is None:
            reply = problem(405) if matched else problem(404)
        else:
            found, name = route
            reply = self._dispatch(name, found.groupdict(), parse_qs(query), headers, body)
        with self._cond:
            self._requests.append(RequestRecord(method, path, reply.status))
        return reply

    def _dispatch(
        self,
        name: str,
        params: dict[str, str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        creating = name.startswith("_create")
        if creating:
            with self._cond:
                self._create_calls += 1
        if name in self._OPEN:
            return getattr(self, name)(**params)
        if not self._authorized(headers.get("authorization", "")):
            return problem(401)
        window, limit, per_second = (
            (self._create_window, self.create_limit_per_minute, self.create_limit_per_second)
            if creating
            else (self._other_window, self.other_limit_per_minute, None)
        )
        with self._cond:
            admitted, remaining, reset = window.admit(time.monotonic(), limit, per_second)
        limit_headers = {"ratelimit-remaining": str(remaining), "ratelimit-reset": str(reset)}
        if not admitted:
            reply = problem(429, detail=PROBLEMS[429][1].format(n=reset))
            if self.send_retry_after:
                reply.headers["Retry-After"] = str(reset)
        elif creating:
            reply = getattr(self, name)(**params, headers=headers, raw=body)
        elif name == "_list":
            reply = self._list(query.get("cursor", [None])[0])
        else:
            reply = getattr(self, name)(**params)
        reply.headers = limit_headers | reply.headers
        return reply

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        # Bearer is documented; the older "Token" scheme is still accepted by the real API.
        return scheme.lower() in ("bearer", "token") and hmac.compare_digest(token.strip(), self.token)

    # ---- HTTP: create --------------------------------------------------------------------------
    def _create_for_model(self, owner: str, name: str, *, headers: dict[str, str], raw: bytes) -> Reply:
        model = MODELS.get(f"{owner}/{name}")
        if model is None:
            return problem(404)
        if not model.official:
            return problem(404, detail=f"{model.name} is not an official model: create it by version.")
        return self._create(model, "model", None, headers, raw)

    def _create_for_deployment(self, owner: str, name: str, *, headers: dict[str, str], raw: bytes) -> Reply:
        target = self.deployments.get(f"{owner}/{name}")
        if target is None or target not in MODELS:
            return problem(404)
        return self._create(MODELS[target], "deployment", f"{owner}/{name}", headers, raw)

    def _create_for_version(self, *, headers: dict[str, str], raw: bytes) -> Reply:
        body = json_body(raw)
        if not isinstance(body, dict):
            return problem(400, detail="The request body must be a JSON object.")
        version = body.get("version")
        if not isinstance(version, str) or not version:
            return invalid("required", "", "version is required")
        model = _resolve_version(version)
        if model is None:
            # The real API answers an unknown or inaccessible version with 422, not 404.
            return problem(
                422,
                title="Invalid version or not permitted",
                detail="The specified version does not exist (or perhaps you don't have permission to use it?)",
            )
        return self._create(model, "version", None, headers, raw)

    def _create(self, model: Model, route: str, deployment: str | None, headers: dict[str, str], raw: bytes) -> Reply:
        body = json_body(raw)
        if not isinstance(body, dict):
            return problem(400, detail="The request body must be a JSON object.")
        if "input" not in body:
            return invalid("required", "", "input is required")
        try:
            input = model.validate(body["input"])
        except InputInvalid as exc:
            return validation_problem(exc.invalid_fields)
        try:
            webhook, events = self._webhook_options(body)
            cancel_after = parse_cancel_after(headers.get("cancel-after"))
        except Refused as refused:
            return refused.reply
        request = CreateRequest(route, model.name, model.version, input, body, headers)
        with self._cond:
            script = next((s for s in self._scripts if s.matches(request)), None)
            if script:
                script.remaining -= 1
        faults = script.faults if script else ()
        hang = next((f for f in faults if f.kind == "hang"), None)
        refusal = next((f for f in faults if f.kind == "http"), None)
        if refusal:
            with self._cond:
                if script:
                    script.used_by.append(None)
            if hang:
                self._stopping.wait(hang.seconds or 0)
            return scripted_problem(refusal)

        record = self._new_record(model, route, deployment, body, headers, input, faults, webhook, events, cancel_after)
        with self._cond:
            if script:
                script.used_by.append(record.id)
        if hang:
            self._stopping.wait(hang.seconds or 0)
        reply_headers: dict[str, str] = {}
        wait = prefer_wait(headers.get("prefer", ""))
        if wait is not None:
            seconds, applied = wait
            reply_headers["Preference-Applied"] = applied
            with self._cond:
                self._cond.wait_for(lambda: record.status in TERMINAL or self._stopping.is_set(), seconds)
        with self._cond:
            fresh = record.status == "starting" and wait is None and hang is None
            return Reply(201, self._public(record, fresh=fresh), headers=reply_headers)

    def _webhook_options(self, body: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
        webhook = body.get("webhook")
        events = body.get("webhook_events_filter")
        if webhook is None and isinstance(body.get("webhook_completed"), str):
            # The deprecated field: a webhook for the terminal event only.
            webhook, events = body["webhook_completed"], events or ["completed"]
        if webhook is None:
            return None, WEBHOOK_EVENTS
        parts = urlsplit(webhook) if isinstance(webhook, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise Refused(invalid("format", "webhook", "Does not match format 'uri'"))
        if self.require_https_webhooks and parts.scheme != "https":
            raise Refused(invalid("format", "webhook", "webhook must be an HTTPS URL"))
        if events is None:
            return webhook, WEBHOOK_EVENTS
        if not isinstance(events, list) or any(e not in WEBHOOK_EVENTS for e in events):
            listed = ", ".join(f'"{e}"' for e in WEBHOOK_EVENTS)
            description = f"webhook_events_filter must be one of the following: {listed}"
            raise Refused(invalid("enum", "webhook_events_filter", description))
        return webhook, tuple(e for e in WEBHOOK_EVENTS if e in events)

    def _new_record(
        self,
        model: Model,
        route: str,
        deployment: str | None,
        body: dict[str, Any],
        headers: dict[str, str],
        input: dict[str, Any],
        faults: tuple[Fault, ...],
        webhook: str | None,
        events: tuple[str, ...],
        cancel_after: float | None,
    ) -> PredictionRecord:
        slow = next((f for f in faults if f.kind == "slow"), None)
        get_errors = next((f for f in faults if f.kind == "get_errors"), None)
        record = PredictionRecord(
            id="".join(secrets.choice(_ID_ALPHABET) for _ in range(26)),
            seq=0,  # set below, under the lock
            model=model.name,
            version=model.version,
            input=input,
            route=route,
            deployment=deployment,
            body=body,
            headers=headers,
            faults=faults,
            starting_seconds=_first_set(slow and slow.starting_seconds, self.starting_seconds),
            processing_seconds=_first_set(slow and slow.seconds, self.processing_seconds),
            webhook=webhook,
            webhook_events_filter=events,
            cancel_after=cancel_after,
            created_at=time.time(),
            _model=model,
            _deadline=time.monotonic() + cancel_after if cancel_after is not None else None,
            _get_errors_left=get_errors.count if get_errors else 0,
            _file_token="".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(40)),
        )
        if webhook:
            record._sender = WebhookSender(
                prediction_id=record.id,
                url=webhook,
                secret=self.webhook_secret,
                faults=[f for f in faults if f.kind == "webhook"],
                retries=self.webhook_retries,
                backoff=self.webhook_backoff,
                timeout=self.webhook_timeout,
                verify=self.webhook_verify,
                stopping=self._stopping,
                record=self._record_delivery,
            )
        thread = threading.Thread(target=self._run, args=(record,), name=f"prediction-{record.id}", daemon=True)
        with self._cond:
            self._seq += 1
            record.seq = self._seq
            self._records[record.id] = record
            self._threads.append(thread)
            self._cond.notify_all()
        thread.start()
        return record

    # ---- HTTP: the rest ---------------------------------------------------------------------------
    def _get(self, id: str) -> Reply:
        with self._cond:
            record = self._records.get(id)
            if record is None:
                return problem(404)
            record.get_calls += 1
            if record._get_errors_left > 0:
                record._get_errors_left -= 1
                fault = record.fault("get_errors")
                assert fault and fault.status
                return scripted_problem(fault)
            return Reply(200, self._public(record))

    def _cancel(self, id: str) -> Reply:
        with self._cond:
            record = self._records.get(id)
            if record is None:
                return problem(404)
            record.cancel_requested = True
            if record.status not in TERMINAL:  # a finished prediction is returned unchanged
                self._finish(record, "canceled")
            return Reply(200, self._public(record))

    def _list(self, cursor: str | None) -> Reply:
        with self._cond:
            newest_first = sorted(self._records.values(), key=lambda r: r.seq, reverse=True)
            size = self.list_page_size
            if cursor is None:
                page = newest_first[:size]
            else:
                try:
                    direction, _, seq_text = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
                    seq = int(seq_text)
                except (ValueError, binascii.Error):
                    direction = ""
                if direction not in ("older", "newer"):
                    return problem(400, detail="Invalid cursor.")
                if direction == "older":
                    page = [r for r in newest_first if r.seq < seq][:size]
                else:
                    page = [r for r in newest_first if r.seq > seq][-size:]
            older = page and any(r.seq < page[-1].seq for r in newest_first)
            newer = page and any(r.seq > page[0].seq for r in newest_first)
            return Reply(
                200,
                {
                    "next": self._cursor_url("older", page[-1].seq) if older else None,
                    "previous": self._cursor_url("newer", page[0].seq) if newer else None,
                    # Unverified: the real list may return fewer fields per prediction.
                    "results": [self._public(r) for r in page],
                },
            )

    def _cursor_url(self, direction: str, seq: int) -> str:
        cursor = base64.urlsafe_b64encode(f"{direction}:{seq}".encode()).decode()
        return f"{self.base_url}/v1/predictions?cursor={cursor}"

    def _secret(self) -> Reply:
        return Reply(200, {"key": self.webhook_secret})

    def _web_page(self, id: str) -> Reply:
        with self._cond:
            record = self._records.get(id)
            if record is None:
                return Reply(404, "<h1>Not found</h1>", content_type="text/html; charset=utf-8")
            text = f"<h1>Prediction {record.id}</h1><p>{record.model}: {record.status}</p>"
        return Reply(200, text, content_type="text/html; charset=utf-8")

    def _stream(self, id: str) -> Reply:
        """Server-sent events for urls.stream: logs lines as they come, then the outputs and done."""
        with self._cond:
            record = self._records.get(id)
        if record is None:
            return problem(404)

        def events() -> Iterator[bytes]:
            sent, number = 0, 0
            deadline = time.monotonic() + 300
            while not self._stopping.is_set() and time.monotonic() < deadline:
                with self._cond:
                    if len(record.logs) == sent and record.status not in TERMINAL:
                        self._cond.wait(0.5)  # woken by any change in the double
                    logs, status, output, error = record.logs, record.status, record.output, record.error
                for line in logs[sent:].splitlines():
                    number += 1
                    yield sse("logs", line, number)
                sent = len(logs)
                if status in TERMINAL:
                    for url in output if isinstance(output, list) else [output] if output else []:
                        number += 1
                        yield sse("output", url, number)
                    if status == "failed":
                        number += 1
                        yield sse("error", json.dumps({"detail": error}), number)
                    number += 1
                    yield sse("done", json.dumps({"reason": status} if status != "succeeded" else {}), number)
                    return

        return Reply(200, content_type="text/event-stream", headers={"Cache-Control": "no-store"}, stream=events())

    # ---- the prediction's life (one thread each) ------------------------------------------------
    def _run(self, record: PredictionRecord) -> None:
        try:
            self._lifecycle(record)
        except Exception:
            log.exception("prediction %s crashed in the double", record.id)
            with self._cond:
                if record.status not in TERMINAL:
                    self._finish(record, "failed", error="Internal error in the Replicate double")

    def _lifecycle(self, record: PredictionRecord) -> None:
        model = record._model
        assert model
        if not self._pause(record, record.starting_seconds):
            return
        if record.fault("abort"):
            with self._cond:
                self._finish(record, "aborted")
            return
        seed = seed_of(record.input)
        steps = model.steps(record.input)
        started = time.monotonic()
        with self._cond:
            if record.status in TERMINAL:
                return
            self._set_status(record, "processing")
            record.started_at = time.time()
            record.logs = f"Using seed: {seed}\n{model.preamble}\n"
            self._changed(record, "start")
        cancel_at = steps // 2 if record.fault("cancel") else None
        for done in range(steps + 1):
            with self._cond:
                if record.status in TERMINAL:
                    return
                record.logs += tqdm_line(done, steps, time.monotonic() - started) + "\n"
                self._changed(record, "logs")
                if done == cancel_at:  # canceled provider-side
                    self._finish(record, "canceled")
                    return
            if done < steps and not self._pause(record, record.processing_seconds / steps):
                return
        failure = record.fault("fail")
        error = failure.error if failure else model.runtime_error(record.input)
        if error:
            with self._cond:
                if record.status not in TERMINAL:
                    record.logs += (failure.logs.rstrip("\n") + "\n") if failure and failure.logs else ""
                    self._finish(record, "failed", error=error)
            return
        urls = self._make_outputs(record, model, seed)  # outside the lock: rendering takes a while
        with self._cond:
            if record.status in TERMINAL:
                return
            record.output = urls
            self._changed(record, "output")
            self._finish(record, "succeeded")

    def _pause(self, record: PredictionRecord, seconds: float) -> bool:
        """Sleep; False when the prediction ended meanwhile (cancel, Cancel-After, double stopped)."""
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                if record.status in TERMINAL or self._stopping.is_set():
                    return False
                now = time.monotonic()
                if record._deadline is not None and now >= record._deadline:
                    # Cancel-After: a prediction not started yet is aborted, a running one canceled.
                    self._finish(record, "aborted" if record.status == "starting" else "canceled")
                    return False
                if now >= end:
                    return True
                wake = end if record._deadline is None else min(end, record._deadline)
                self._cond.wait(wake - now)

    def _set_status(self, record: PredictionRecord, status: str) -> None:
        record.status = status
        record.statuses.append(status)

    def _finish(self, record: PredictionRecord, status: str, error: str | None = None) -> None:
        """End the prediction (call with the lock held)."""
        self._set_status(record, status)
        record.error = error
        record.completed_at = time.time()
        record._expires = time.monotonic() + self.file_ttl_seconds
        self._changed(record, "completed")
        if record._sender:
            record._sender.close()

    def _changed(self, record: PredictionRecord, event: str) -> None:
        """Wake waiters and send the webhook for `event` if asked for (call with the lock held)."""
        self._cond.notify_all()
        if record._sender is None or event not in record.webhook_events_filter:
            return
        if event in ("logs", "output"):
            # logs/output webhooks are throttled; start and completed always go out.
            now = time.monotonic()
            last = record._last_throttled_webhook
            if last is not None and now - last < self.webhook_min_interval:
                return
            record._last_throttled_webhook = now
        record._sender.send(event, json.dumps(self._public(record)))

    def _record_delivery(self, delivery: WebhookDelivery) -> None:
        with self._cond:
            self._deliveries.append(delivery)
            self._cond.notify_all()

    def _make_outputs(self, record: PredictionRecord, model: Model, seed: int) -> list[str]:
        fault = record.fault("output")
        mode = fault.mode if fault else None
        specs = model.outputs(record.input)
        if mode == "foreign":
            assert fault and fault.url
            return [fault.url for _ in specs]
        urls = []
        for index, (width, height, fmt) in enumerate(specs):
            path = f"/xezq/{record._file_token}/out-{index}.{fmt}"
            label = f"{model.name} {record.id} #{index}: {record.input.get('prompt', '')}"
            quality = record.input.get("output_quality", 80)
            data = render(width, height, fmt, label=label, seed=seed + index, quality=quality)
            if mode == "corrupt":
                data = b"this is not an image " + secrets.token_bytes(256)
            elif mode == "large":
                assert fault and fault.size is not None
                data += b"\0" * max(0, fault.size - len(data))
            declare_length = fault.declare_length if fault else True
            self.files.put(path, StoredFile(data, CONTENT_TYPES[fmt], record.id, declare_length))
            base = self.insecure_files_base_url if mode == "http" else self.files_base_url
            urls.append(base + path)
        return urls

    # ---- the prediction as JSON --------------------------------------------------------------------
    def _remove_data_if_due(self, record: PredictionRecord) -> None:
        if record.data_removed or record._expires is None or time.monotonic() < record._expires:
            return
        # Unverified detail: which fields are emptied and to what. Output goes, as documented.
        record.data_removed = True
        record.output = None
        record.input = {}
        record.logs = ""
        self.files.remove_prediction(record.id)

    def _public(self, record: PredictionRecord, *, fresh: bool = False) -> dict[str, Any]:
        """The prediction as the API returns it. fresh=True: the shape of a plain create reply,
        without output, started_at, completed_at and metrics."""
        self._remove_data_if_due(record)
        base = self.base_url
        data: dict[str, Any] = {
            "id": record.id,
            "model": record.model,
            "version": record.version,
            "input": record.input,
            "logs": record.logs,
        }
        if not fresh:
            data["output"] = record.output
        data |= {
            "data_removed": record.data_removed,
            "error": record.error,
            "source": "api",
            "status": record.status,
            "created_at": _iso(record.created_at),
        }
        if not fresh:
            data["started_at"] = _iso(record.started_at)
            data["completed_at"] = _iso(record.completed_at)
            if record.status in TERMINAL:
                metrics: dict[str, float] = {"total_time": round(record.completed_at - record.created_at, 6)}
                if record.started_at is not None:
                    metrics["predict_time"] = round(record.completed_at - record.started_at, 6)
                data["metrics"] = metrics
        data["urls"] = {
            "cancel": f"{base}/v1/predictions/{record.id}/cancel",
            "get": f"{base}/v1/predictions/{record.id}",
            "stream": f"{base}/v1/streams/{record.id}",
            "web": f"{base}/p/{record.id}",
        }
        return data


# ---- helpers ------------------------------------------------------------------------------------
def _first_set(value: float | None, default: float) -> float:
    return default if value is None else value


def _resolve_version(version: str) -> Model | None:
    """The "version" of a create may be a version id, "owner/name:id", or an official model's name."""
    if ":" in version:
        name, _, version_id = version.partition(":")
        model = MODELS.get(name)
        return model if model and not model.official and model.version == version_id else None
    if "/" in version:
        model = MODELS.get(version)
        return model if model and model.official else None
    return VERSIONS.get(version)


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
