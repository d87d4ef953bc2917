"""What the sync and async clients share: settings, retries, error mapping, signing, downloads."""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from mediagen import errors

DEFAULT_URL = "http://127.0.0.1:8000"
API = "/api/v1"
OUTPUTS_FILE = "cdk-outputs.json"
# Connect fast, read long enough for a submit that stores and queues; nothing waits forever.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# 409 with this code: the same Idempotency-Key's first request is still running (e.g. its answer
# timed out on the way back); retrying with the same key ends with that request's job.
IN_PROGRESS = "IDEMPOTENCY_IN_PROGRESS"
EXTENSIONS = {"image/png": ".png", "image/webp": ".webp", "image/jpeg": ".jpg"}
MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".webp": (b"RIFF",), ".jpg": (b"\xff\xd8\xff",)}


def resolve_url(base_url: str | None, outputs_file: str | os.PathLike | None = None) -> str:
    """Argument, else MEDIAGEN_URL, else the ApiUrl of `make deploy`'s cdk-outputs.json (in the
    current directory), else `make dev`'s address."""
    url = base_url or os.environ.get("MEDIAGEN_URL")
    if not url:
        path = Path(outputs_file or OUTPUTS_FILE)
        if path.is_file():
            try:
                stacks = json.loads(path.read_text())
                url = next((o["ApiUrl"] for o in stacks.values() if isinstance(o, dict) and o.get("ApiUrl")), None)
            except (ValueError, AttributeError):
                raise errors.ConfigurationError(f"{path}: not a stack outputs file") from None
    return checked_url(url or DEFAULT_URL).rstrip("/")


def checked_url(url: str) -> str:
    """`url` when it is http(s)://host[:port][/path]; else ConfigurationError naming it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not one)
    except ValueError as exc:
        raise errors.ConfigurationError(f"invalid service URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise errors.ConfigurationError(f"invalid service URL {url!r}: expected http(s)://host[:port][/path]")
    return url


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get("MEDIAGEN_API_KEY") or None


def wants_sigv4(url: str, api_key: str | None, sigv4: bool | None) -> bool:
    """Explicit choice, else sign requests to an AWS API Gateway URL when no API key is given."""
    if sigv4 is not None:
        return sigv4
    return api_key is None and (urlsplit(url).hostname or "").endswith(".amazonaws.com")


class SigV4Auth(httpx.Auth):
    """Signs each request for API Gateway with credentials from the standard AWS chain."""

    requires_request_body = True

    def __init__(self, url: str, region: str | None = None) -> None:
        try:
            import botocore.session
            from botocore.auth import SigV4Auth as Signer
        except ImportError:
            raise errors.ConfigurationError("SigV4 signing needs botocore: pip install 'mediagen[aws]'") from None
        host = urlsplit(url).hostname or ""
        # <api-id>.execute-api.<region>.amazonaws.com
        parts = host.split(".")
        region = region or (parts[2] if len(parts) > 3 and parts[1] == "execute-api" else None)
        session = botocore.session.get_session()
        region = region or session.get_config_variable("region")
        credentials = session.get_credentials()
        if credentials is None or not region:
            raise errors.AuthError(0, "NO_CREDENTIALS", "no AWS credentials or region for SigV4 signing")
        self._signer = Signer(credentials, "execute-api", region)

    def auth_flow(self, request: httpx.Request):
        from botocore.awsrequest import AWSRequest

        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"connection", "user-agent"}}
        aws = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=headers)
        self._signer.add_auth(aws)
        request.headers.update(dict(aws.headers.items()))
        yield request


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff with full jitter for 429, 5xx and connection errors; Retry-After wins when given."""

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        after = retry_after(response) if response is not None else None
        if after is not None:
            return min(after, self.max_retry_after)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def retry_after(response: httpx.Response | None) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def should_retry(method: str, retry_safe: bool, response: httpx.Response | None, exc: Exception | None) -> bool:
    """GETs and keyed submits may repeat; any other POST only when the service surely did nothing."""
    if exc is not None:
        return method == "GET" or retry_safe or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    assert response is not None
    if response.status_code == 429:
        return True
    if response.status_code == 409:
        return retry_safe and error_code(response) == IN_PROGRESS
    return response.status_code in RETRYABLE_STATUS and (method == "GET" or retry_safe)


def error_code(response: httpx.Response) -> str | None:
    """The `code` of the service's error body, if it has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    status = response.status_code
    code = str(body.get("code") or f"HTTP_{status}")
    detail = str(body.get("detail") or body.get("message") or response.reason_phrase or "error")
    if status == 422:
        raise errors.ValidationError(status, code, detail, body)
    if status in (401, 403):
        raise errors.AuthError(status, code, detail, body)
    if status == 404:
        raise errors.NotFound(status, code, detail, body)
    if status == 409:
        raise errors.Conflict(status, code, detail, body)
    if status == 429:
        raise errors.RateLimited(status, code, detail, body, retry_after=retry_after(response))
    if status >= 500:
        raise errors.ServerError(status, code, detail, body)
    raise errors.APIError(status, code, detail, body)


def connection_error(url: str, exc: Exception) -> errors.APIConnectionError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return errors.APIConnectionError(f"{url} {kind}: {type(exc).__name__}")


def generate_body(
    prompt: str,
    model: str | None,
    parameters: dict[str, Any],
    webhook: str | None = None,
    webhook_events: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The body of POST /generate: generation parameters nested, the webhook fields at the top."""
    body: dict[str, Any] = {"prompt": prompt}
    if model:
        body["model"] = model
    if parameters:
        body["parameters"] = parameters
    if webhook is not None:
        body["webhook"] = webhook
    if webhook_events is not None:
        body["webhook_events"] = [str(event) for event in webhook_events]
    return body


def output_path(directory: Path, job_id: str, index: int, content_type: str) -> Path:
    ext = EXTENSIONS.get(content_type.split(";")[0].strip().lower())
    if ext is None:
        raise errors.DownloadError(f"output {index} of {job_id}: unexpected content type {content_type!r}")
    return directory / f"{job_id}_{index}{ext}"


def check_download(path: Path, expected_type: str, response: httpx.Response, head: bytes) -> None:
    """The file must be what the job said: same content type from storage, matching magic bytes."""
    served = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if served and served != expected_type:
        raise errors.DownloadError(f"{path.name}: served as {served}, expected {expected_type}")
    if not head.startswith(MAGIC[path.suffix]):
        raise errors.DownloadError(f"{path.name}: content is not {expected_type}")


def poll_interval(elapsed: float) -> float:
    """Quick at first (mock jobs take seconds), then every 2 s."""
    return 0.25 if elapsed < 5 else 1.0 if elapsed < 30 else 2.0


@dataclass(frozen=True)
class Connection:
    """Where the clients talk to and how: resolved once, the same way for Client and AsyncClient."""

    base_url: str
    headers: dict[str, str]
    auth: httpx.Auth | None
    retry: RetryPolicy

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        sigv4: bool | None,
        retry: RetryPolicy | None,
        outputs_file: str | os.PathLike | None,
    ) -> Connection:
        url = resolve_url(base_url, outputs_file)
        api_key = resolve_api_key(api_key)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        auth = SigV4Auth(url) if wants_sigv4(url, api_key, sigv4) else None
        return cls(url, headers, auth, retry or RetryPolicy())

    def api_options(self, timeout: float | httpx.Timeout, transport: Any) -> dict[str, Any]:
        """The httpx client's options for API calls (download URLs are presigned: they get none of these)."""
        return {
            "base_url": self.base_url,
            "headers": self.headers,
            "auth": self.auth,
            "timeout": timeout,
            "transport": transport,
        }

    def retry_delay(
        self, attempt: int, method: str, retry_safe: bool, response: httpx.Response | None, exc: Exception | None
    ) -> float | None:
        """Seconds to wait before trying a request again, or None: its answer is final."""
        if attempt < self.retry.max_retries and should_retry(method, retry_safe, response, exc):
            return self.retry.delay(attempt, response)
        return None

    def answer(self, response: httpx.Response | None, exc: Exception | None, model: Any = None) -> Any:
        """A final answer's JSON body (as `model`, when given), or the error it means."""
        if exc is not None:
            raise connection_error(self.base_url, exc) from None
        assert response is not None
        raise_for_error(response)
        where = f"unexpected response from {response.request.url.copy_with(query=None)}"
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise errors.UnexpectedResponse(f"{where}: HTTP {response.status_code} {kind}, not JSON") from None
        if model is None:
            return body
        try:
            return model.from_dict(body)
        except (TypeError, ValueError, KeyError, AttributeError):
            raise errors.UnexpectedResponse(f"{where}: not a {model.SCHEMA}") from None


class Waiter:
    """The decisions of `wait()`, shared by the sync and async jobs (they differ only in how they
    poll and sleep): whether to tell `on_update` (the job changed since it last heard), and how
    long to sleep."""

    def __init__(self, timeout: float | None, on_update: Callable[[Any], Any] | None = None) -> None:
        self.timeout, self.start, self.seen = timeout, time.monotonic(), None
        self.on_update = on_update

    def report(self, job: Any) -> Any:
        """`on_update(job)`'s result (an awaitable, for an async callback) when the job changed."""
        state = (job.status, job.progress, job.queue_position)
        changed, self.seen = state != self.seen, state
        return self.on_update(job) if changed and self.on_update else None

    def pause(self, job: Any) -> float:
        """Seconds until the next poll; WaitTimeout once `timeout` has passed."""
        elapsed = time.monotonic() - self.start
        if self.timeout is not None and elapsed >= self.timeout:
            raise errors.WaitTimeout(f"job {job.id} still {job.status.value} after {self.timeout:g}s")
        return poll_interval(elapsed)
