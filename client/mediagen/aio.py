"""The asynchronous client: the same surface as `Client`, with `await`."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from mediagen import _core, errors
from mediagen.client import Job, _save
from mediagen.models import Accepted, Detail, JobPage, JobStatus, JobSummary, ModelList, Output, Stats, StatusView

API = _core.API


class AsyncJob(Job):
    _client: AsyncClient  # type: ignore[assignment]

    async def refresh(self) -> AsyncJob:  # type: ignore[override]
        self.data = Detail.from_dict(await self._client._request("GET", f"{API}/jobs/{self.id}"))
        return self

    async def poll(self) -> AsyncJob:  # type: ignore[override]
        self.data = StatusView.from_dict(await self._client._request("GET", f"{API}/status/{self.id}"))
        return self

    async def wait(  # type: ignore[override]
        self, timeout: float | None = None, on_update: Callable[[Job], Any] | None = None
    ) -> AsyncJob:
        start, seen = time.monotonic(), None
        while True:
            await self.poll()
            state = (self.status, self.progress, self.queue_position)
            if on_update and state != seen:
                result = on_update(self)
                if asyncio.iscoroutine(result):
                    await result
            seen = state
            if self.done:
                return await self.refresh()
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed >= timeout:
                raise errors.WaitTimeout(f"job {self.id} still {self.status.value} after {timeout:g}s")
            await asyncio.sleep(_core.poll_interval(elapsed))

    async def cancel(self) -> AsyncJob:  # type: ignore[override]
        self.data = StatusView.from_dict(await self._client._request("POST", f"{API}/jobs/{self.id}/cancel"))
        return self

    async def retry(self, idempotency_key: str | None = None) -> AsyncJob:  # type: ignore[override]
        self.data = Accepted.from_dict(await self._client._submit(f"{API}/jobs/{self.id}/retry", None, idempotency_key))
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
        return AsyncJob(self._client, Detail.from_dict(await self._client._request("GET", f"{API}/jobs/{job_id}")))  # type: ignore[arg-type]

    async def list(self, status: str | JobStatus | None = None, page_size: int = 50) -> AsyncIterator[JobSummary]:
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if status:
                params["status"] = JobStatus(status).value
            if cursor:
                params["cursor"] = cursor
            page = JobPage.from_dict(await self._client._request("GET", f"{API}/jobs", params=params))
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
        self.base_url = _core.resolve_url(base_url, outputs_file)
        api_key = _core.resolve_api_key(api_key)
        self.retry_policy = retry or _core.RetryPolicy()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        auth = _core.SigV4Auth(self.base_url) if _core.wants_sigv4(self.base_url, api_key, sigv4) else None
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, auth=auth, timeout=timeout, transport=transport
        )
        self._files = httpx.AsyncClient(timeout=timeout, transport=transport)
        self.jobs = AsyncJobs(self)

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
        **parameters: Any,
    ) -> AsyncJob:
        body = _core.generate_body(prompt, model, parameters)
        job = AsyncJob(self, Accepted.from_dict(await self._submit(f"{API}/generate", body, idempotency_key)))  # type: ignore[arg-type]
        return await job.wait(timeout=timeout, on_update=on_update) if wait else job

    async def job(self, job_id: str) -> AsyncJob:
        return await self.jobs.get(job_id)

    async def models(self) -> ModelList:
        return ModelList.from_dict(await self._request("GET", f"{API}/models"))

    async def stats(self) -> Stats:
        return Stats.from_dict(await self._request("GET", f"{API}/stats"))

    async def _submit(self, path: str, body: dict | None, key: str | None) -> dict:
        return await self._request("POST", path, json=body, idempotency_key=key or str(uuid.uuid4()))

    async def _request(self, method: str, path: str, *, idempotency_key: str | None = None, **kwargs: Any) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        policy, attempt = self.retry_policy, 0
        while True:
            response, failure = None, None
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                failure = exc
            if attempt < policy.max_retries and _core.should_retry(method, bool(idempotency_key), response, failure):
                await asyncio.sleep(policy.delay(attempt, response))
                attempt += 1
                continue
            if failure is not None:
                raise _core.connection_error(self.base_url, failure) from None
            assert response is not None
            _core.raise_for_error(response)
            return response.json()

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
                await asyncio.sleep(self.retry_policy.delay(attempt))
                attempt += 1
