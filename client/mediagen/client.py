"""The synchronous client: `Client`, its `Job` handle and `client.jobs`."""

from __future__ import annotations

import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from mediagen import _core, errors
from mediagen.models import (
    Accepted,
    Cost,
    Detail,
    JobPage,
    JobStatus,
    JobSummary,
    ModelList,
    Output,
    Stats,
    StatusView,
    WebhookEvent,
)

API = _core.API


class Job:
    """A job on the service. Its fields are those of the last answer; `refresh()` reads it again."""

    def __init__(self, client: Client, data: Accepted | StatusView | Detail) -> None:
        self._client = client
        self.data = data

    # ---- what the last answer said -----------------------------------------------------------
    @property
    def id(self) -> str:
        return self.data.job_id

    @property
    def status(self) -> JobStatus:
        return self.data.status

    @property
    def progress(self) -> int:
        return 100 if self.status == JobStatus.COMPLETED else getattr(self.data, "progress", 0)

    @property
    def attempt(self) -> int:
        return getattr(self.data, "attempt", 1)

    @property
    def error(self):
        return getattr(self.data, "error", None)

    @property
    def queue_position(self) -> int | None:
        """Where a pending job is in the queue, when the service says so."""
        return (getattr(self.data, "raw", None) or {}).get("queue_position")

    @property
    def outputs(self) -> list[Output]:
        return list(getattr(self.data, "outputs", []))

    @property
    def cost(self) -> Cost | None:
        """What the job cost, in USD (provider and AWS, each part named); None until its detail
        was read (`wait()`, `refresh()`)."""
        return getattr(self.data, "cost", None)

    @property
    def done(self) -> bool:
        return self.status.done

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, status={self.status.value!r}, progress={self.progress})"

    # ---- calls -------------------------------------------------------------------------------
    def refresh(self) -> Job:
        self.data = self._client._request("GET", f"{API}/jobs/{self.id}", model=Detail)
        return self

    def poll(self) -> Job:
        """The cheap status read (no download URLs)."""
        self.data = self._client._request("GET", f"{API}/status/{self.id}", model=StatusView)
        return self

    def wait(self, timeout: float | None = None, on_update: Callable[[Job], None] | None = None) -> Job:
        """Poll until the job ends; `on_update(job)` on every change. Returns the job's detail."""
        return self._follow(_core.Waiter(timeout, on_update))

    def _follow(self, waiter: _core.Waiter) -> Job:
        while True:
            self.poll()
            waiter.report(self)
            if self.done:
                return self.refresh()
            time.sleep(waiter.pause(self))

    def cancel(self) -> Job:
        self.data = self._client._request("POST", f"{API}/jobs/{self.id}/cancel", model=StatusView)
        return self

    def retry(self, idempotency_key: str | None = None) -> Job:
        self.data = self._client._submit(f"{API}/jobs/{self.id}/retry", None, idempotency_key)
        return self

    def download(self, directory: str | os.PathLike = ".") -> list[Path]:
        """Save every output as `<job id>_<index>.<ext>`; the extension follows the content type,
        and the bytes are checked against it. Reads fresh download URLs first."""
        self.refresh()
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        return [
            self._client._download(output, _core.output_path(target, self.id, output.index, output.content_type))
            for output in self.outputs
        ]


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, job_id: str) -> Job:
        return Job(self._client, self._client._request("GET", f"{API}/jobs/{job_id}", model=Detail))

    def list(self, status: str | JobStatus | None = None, page_size: int = 50) -> Iterator[JobSummary]:
        """Every job (newest first), following `next_cursor` page after page."""
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if status:
                params["status"] = JobStatus(status).value
            if cursor:
                params["cursor"] = cursor
            page = self._client._request("GET", f"{API}/jobs", model=JobPage, params=params)
            yield from page.jobs
            cursor = page.next_cursor
            if not cursor:
                return


class Client:
    """Client(base_url=None, api_key=None): arguments, else MEDIAGEN_URL / MEDIAGEN_API_KEY, else
    cdk-outputs.json's ApiUrl, else http://127.0.0.1:8000. Without an API key, requests to an AWS
    URL are SigV4-signed from the AWS credential chain (`sigv4=` forces either way)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        sigv4: bool | None = None,
        timeout: float | httpx.Timeout = _core.DEFAULT_TIMEOUT,
        retry: _core.RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        outputs_file: str | os.PathLike | None = None,
    ) -> None:
        self._connection = _core.Connection.resolve(base_url, api_key, sigv4, retry, outputs_file)
        self.base_url, self.retry_policy = self._connection.base_url, self._connection.retry
        self._http = httpx.Client(**self._connection.api_options(timeout, transport))
        # Download URLs are presigned: they must not carry our credentials.
        self._files = httpx.Client(timeout=timeout, transport=transport)
        self.jobs = Jobs(self)
        self._sleep = time.sleep

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._files.close()

    # ---- the surface -------------------------------------------------------------------------
    def generate(
        self,
        prompt: str,
        model: str | None = None,
        *,
        wait: bool = True,
        on_update: Callable[[Job], None] | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        webhook: str | None = None,
        webhook_events: Iterable[str | WebhookEvent] | None = None,
        **parameters: Any,
    ) -> Job:
        """Submit a job (`parameters`: width, height, num_inference_steps, ...). `on_update(job)` once
        it is accepted and, with `wait`, on every change until it ends. `webhook`: an https URL the
        service sends the job's `webhook_events` to (default: job.completed, job.failed,
        job.cancelled). A retried submit carries the same Idempotency-Key, so it never makes a second
        job."""
        body = _core.generate_body(prompt, model, parameters, webhook, webhook_events)
        job = Job(self, self._submit(f"{API}/generate", body, idempotency_key))
        waiter = _core.Waiter(timeout, on_update)
        waiter.report(job)
        return job._follow(waiter) if wait else job

    def job(self, job_id: str) -> Job:
        return self.jobs.get(job_id)

    def models(self) -> ModelList:
        return self._request("GET", f"{API}/models", model=ModelList)

    def stats(self) -> Stats:
        return self._request("GET", f"{API}/stats", model=Stats)

    # ---- transport ---------------------------------------------------------------------------
    def _submit(self, path: str, body: dict | None, key: str | None) -> Accepted:
        return self._request("POST", path, model=Accepted, json=body, idempotency_key=key or str(uuid.uuid4()))

    def _request(
        self, method: str, path: str, *, model: Any = None, idempotency_key: str | None = None, **kwargs: Any
    ) -> Any:
        """The answer's JSON (as `model`), after the retries the policy allows."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        for attempt in itertools.count():
            response, failure = None, None
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                failure = exc
            delay = self._connection.retry_delay(attempt, method, bool(idempotency_key), response, failure)
            if delay is None:
                return self._connection.answer(response, failure, model)
            self._sleep(delay)

    def _download(self, output: Output, path: Path) -> Path:
        attempt = 0
        while True:
            try:
                with self._files.stream("GET", output.url) as response:
                    if response.status_code >= 500 and attempt < self.retry_policy.max_retries:
                        raise httpx.RemoteProtocolError("retry")
                    if response.status_code != 200:
                        raise errors.DownloadError(f"{path.name}: HTTP {response.status_code} from storage")
                    return _save(path, output.content_type, response, response.iter_bytes())
            except httpx.TransportError as exc:
                if attempt >= self.retry_policy.max_retries:
                    raise errors.DownloadError(f"{path.name}: {type(exc).__name__}") from None
                self._sleep(self.retry_policy.delay(attempt))
                attempt += 1


def _save(path: Path, content_type: str, response: httpx.Response, chunks) -> Path:
    """Write to a temporary file beside the target, check it, then move it into place."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        head = b""
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                if len(head) < 16:
                    head += chunk[:16]
                out.write(chunk)
        _core.check_download(path, content_type, response, head)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path
