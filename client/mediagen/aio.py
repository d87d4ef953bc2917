"""The asynchronous client: the same surface as `Client`, with `await`."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from mediagen import _core, errors
from mediagen.client import Job, _save
from mediagen.models import (
    Accepted,
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


class AsyncJob(Job):
    _client: AsyncClient  # type: ignore[assignment]

    async def refresh(self) -> AsyncJob:  # type: ignore[override]
        self.data = await self._client._request("GET", f"{API}/jobs/{self.id}", model=Detail)
        return self

    async def poll(self) -> AsyncJob:  # type: ignore[override]
        self.data = await self._client._request("GET", f"{API}/status/{self.id}", model=StatusView)
        return self

    async def wait(  # type: ignore[override]
        self, timeout: float | None = None, on_update: Callable[[Job], Any] | None = None
    ) -> AsyncJob:
        return await self._follow(_core.Waiter(timeout, on_update))

    async def _follow(self, waiter: _core.Waiter) -> AsyncJob:  # type: ignore[override]
        while True:
            await self.poll()
            await _report(waiter, self)
            if self.done:
                return await self.refresh()
            await asyncio.sleep(waiter.pause(self))

    async def cancel(self) -> AsyncJob:  # type: ignore[override]
        self.data = await self._client._request("POST", f"{API}/jobs/{self.id}/cancel", model=StatusView)
        return self

    async def retry(self, idempotency_key: str | None = None) -> AsyncJob:  # type: ignore[override]
        self.data = await self._client._submit(f"{API}/jobs/{self.id}/retry", None, idempotency_key)
        return self

    async def download(self, directory: str | os.PathLike = ".") -> list[Path]:  # type: ignore[override]
        await self.refresh()
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for output in self.outputs:
            path = _core.output_path(target, self.id, output.index, output.content_type)
            paths.append(await self._client._download(output, path))
        return paths


class AsyncJobs:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self, job_id: str) -> AsyncJob:
        return AsyncJob(self._client, await self._client._request("GET", f"{API}/jobs/{job_id}", model=Detail))  # type: ignore[arg-type]

    async def list(self, status: str | JobStatus | None = None, page_size: int = 50) -> AsyncIterator[JobSummary]:
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if status:
                params["status"] = JobStatus(status).value
            if cursor:
                params["cursor"] = cursor
            page = await self._client._request("GET", f"{API}/jobs", model=JobPage, params=params)
            for job in page.jobs:
                yield job
            cursor = page.next_cursor
            if not cursor:
                return


class AsyncClient:
    """See `Client`: same arguments, same settings, same retries."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        sigv4: bool | None = None,
        timeout: float | httpx.Timeout = _core.DEFAULT_TIMEOUT,
        retry: _core.RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        outputs_file: str | os.PathLike | None = None,
    ) -> None:
        self._connection = _core.Connection.resolve(base_url, api_key, sigv4, retry, outputs_file)
        self.base_url, self.retry_policy = self._connection.base_url, self._connection.retry
        self._http = httpx.AsyncClient(**self._connection.api_options(timeout, transport))
        self._files = httpx.AsyncClient(timeout=timeout, transport=transport)
        self.jobs = AsyncJobs(self)
        self._sleep = asyncio.sleep  # the retries' backoff

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._files.aclose()

    async def generate(
        self,
        prompt: str,
        model: str | None = None,
        *,
        wait: bool = True,
        on_update: Callable[[Job], Any] | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        webhook: str | None = None,
        webhook_events: Iterable[str | WebhookEvent] | None = None,
        **parameters: Any,
    ) -> AsyncJob:
        """See `Client.generate`; `on_update` may be a coroutine function."""
        body = _core.generate_body(prompt, model, parameters, webhook, webhook_events)
        job = AsyncJob(self, await self._submit(f"{API}/generate", body, idempotency_key))  # type: ignore[arg-type]
        waiter = _core.Waiter(timeout, on_update)
        await _report(waiter, job)
        return await job._follow(waiter) if wait else job

    async def job(self, job_id: str) -> AsyncJob:
        return await self.jobs.get(job_id)

    async def models(self) -> ModelList:
        return await self._request("GET", f"{API}/models", model=ModelList)

    async def stats(self) -> Stats:
        return await self._request("GET", f"{API}/stats", model=Stats)

    async def _submit(self, path: str, body: dict | None, key: str | None) -> Accepted:
        return await self._request("POST", path, model=Accepted, json=body, idempotency_key=key or str(uuid.uuid4()))

    async def _request(
        self, method: str, path: str, *, model: Any = None, idempotency_key: str | None = None, **kwargs: Any
    ) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        for attempt in itertools.count():
            response, failure = None, None
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                failure = exc
            delay = self._connection.retry_delay(attempt, method, bool(idempotency_key), response, failure)
            if delay is None:
                return self._connection.answer(response, failure, model)
            await self._sleep(delay)

    async def _download(self, output: Output, path: Path) -> Path:
        """As the sync client: storage's 5xx and connection errors are retried with backoff."""
        attempt = 0
        while True:
            try:
                async with self._files.stream("GET", output.url) as response:
                    if response.status_code >= 500 and attempt < self.retry_policy.max_retries:
                        raise httpx.RemoteProtocolError("retry")
                    if response.status_code != 200:
                        raise errors.DownloadError(f"{path.name}: HTTP {response.status_code} from storage")
                    return _save(path, output.content_type, response, [await response.aread()])
            except httpx.TransportError as exc:
                if attempt >= self.retry_policy.max_retries:
                    raise errors.DownloadError(f"{path.name}: {type(exc).__name__}") from None
                await self._sleep(self.retry_policy.delay(attempt))
                attempt += 1


async def _report(waiter: _core.Waiter, job: AsyncJob) -> None:
    """Tell the waiter's `on_update`, awaiting it when it is a coroutine function."""
    result = waiter.report(job)
    if asyncio.iscoroutine(result):
        await result
