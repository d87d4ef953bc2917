"""The mediagen library end to end against the emulation: the real HTTP API, the real workflow."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from mediagen import AsyncClient, Client, JobStatus, NotFound, RateLimited, RetryPolicy, ValidationError
from mediagen.models import MODELS, field_names
from PIL import Image

from shared.errors import PermanentError
from tests.conftest import unique_prompt
from tests.integration.test_idempotency import jobs_with_prompt
from tests.integration.test_replicate import double, provider  # noqa: F401  (fixtures)


@pytest.fixture
def mediagen(emulator):
    with Client(emulator.gateway.url) as client:
        client._sleep = lambda seconds: None  # retries are asserted, not waited for
        yield client


def test_client_models_match_the_live_openapi_components(api):
    components = api.get("/openapi.json").json()["components"]["schemas"]
    for model in MODELS:
        schema = components[model.SCHEMA]
        fields, required = field_names(model)
        assert fields <= set(schema["properties"]), f"{model.__name__}: fields the API does not have"
        assert required == set(schema.get("required", [])), f"{model.__name__}: required fields differ"


def test_generate_waits_with_rising_progress_and_downloads_checked_files(mediagen, tmp_path, configure):
    configure(MOCK_GENERATION_SECONDS="2")
    progress = []
    job = mediagen.generate(
        unique_prompt("lib"), width=256, height=128, num_outputs=2, on_update=lambda j: progress.append(j.progress)
    )

    paths = job.download(tmp_path / "images")

    assert job.status == JobStatus.COMPLETED and job.progress == 100
    assert progress == sorted(progress) and len(set(progress)) >= 2, progress
    assert [p.name for p in paths] == [f"{job.id}_0.png", f"{job.id}_1.png"]
    assert Image.open(paths[0]).size == (256, 128)
    # What it cost, typed: mock generation has no provider charge; our AWS cost, each part named.
    assert job.cost.provider is None and job.cost.aws.usd > 0 and job.cost.total_usd == job.cost.aws.usd
    assert job.cost.aws.counted.transitions == 1 and job.cost.aws.counted.s3_puts == 2
    assert set(job.cost.aws.parts) == {"step_functions", "lambda", "api_gateway", "dynamodb", "sqs", "s3"}


def test_a_failed_job_and_its_retry(mediagen, faults):
    prompt = unique_prompt("lib fail")
    faults.script(prompt, PermanentError("scripted"))

    job = mediagen.generate(prompt)
    assert job.status == JobStatus.FAILED and job.error.code == "GENERATION_FAILED"

    assert job.retry().wait().status == JobStatus.COMPLETED
    assert job.attempt == 2


def test_cancel_while_it_runs(mediagen, configure):
    configure(MOCK_GENERATION_SECONDS="5")
    job = mediagen.generate(unique_prompt("lib cancel"), wait=False)
    assert job.cancel().status == JobStatus.CANCELLED
    assert job.wait(timeout=20).status == JobStatus.CANCELLED


def test_typed_errors_name_the_fields(mediagen):
    with pytest.raises(ValidationError) as refused:
        mediagen.generate("x", width=4000, wait=False)
    assert refused.value.fields == ["parameters.width"]
    with pytest.raises(NotFound):
        mediagen.job(str(uuid.uuid4()))


def test_listing_follows_every_page(mediagen):
    prompt = unique_prompt("page")
    ids = {mediagen.generate(f"{prompt} {i}", wait=False).id for i in range(5)}
    listed = [j.job_id for j in mediagen.jobs.list(page_size=2)]
    assert ids <= set(listed) and len(listed) == len(set(listed))


class Flaky(httpx.BaseTransport):
    """In front of the real gateway: scripted answers first, then the real thing."""

    def __init__(self, script):
        self.real, self.script, self.requests = httpx.HTTPTransport(), list(script), []

    def handle_request(self, request):
        self.requests.append(request)
        step = self.script.pop(0) if self.script else None
        if step == "drop":  # the service does the work, the answer is lost on the way back
            self.real.handle_request(request).read()
            raise httpx.ReadError("connection reset")
        if isinstance(step, httpx.Response):
            return step
        return self.real.handle_request(request)


def test_429_is_retried_after_retry_after(emulator):
    transport = Flaky(
        [httpx.Response(429, headers={"Retry-After": "7"}, json={"code": "RATE_LIMITED", "detail": "slow"})]
    )
    with Client(emulator.gateway.url, transport=transport) as client:
        slept = []
        client._sleep = slept.append
        job = client.generate(unique_prompt("429"), wait=False)
    assert slept == [7.0] and job.status == JobStatus.PENDING


def test_429_after_every_retry_is_rate_limited_with_retry_after(emulator):
    busy = httpx.Response(429, headers={"Retry-After": "3"}, json={"code": "RATE_LIMITED", "detail": "slow"})
    with Client(emulator.gateway.url, transport=Flaky([busy] * 3), retry=RetryPolicy(max_retries=2)) as client:
        client._sleep = lambda s: None
        with pytest.raises(RateLimited) as limited:
            client.stats()
    assert limited.value.retry_after == 3.0


def test_a_retried_submit_after_a_dropped_answer_creates_one_job(emulator):
    prompt = unique_prompt("dropped")
    transport = Flaky(["drop"])
    with Client(emulator.gateway.url, transport=transport) as client:
        client._sleep = lambda s: None
        job = client.generate(prompt, wait=False)
    keys = [r.headers["idempotency-key"] for r in transport.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert jobs_with_prompt(prompt) == [job.id]


def test_async_client_generates_lists_and_downloads(emulator, tmp_path):
    async def run():
        async with AsyncClient(emulator.gateway.url) as client:
            job = await client.generate(unique_prompt("async"))
            paths = await job.download(tmp_path)
            listed = [j.job_id async for j in client.jobs.list(status="completed", page_size=3)]
            return job, paths, listed, await client.stats()

    job, paths, listed, stats = asyncio.run(run())
    assert job.status == JobStatus.COMPLETED and paths[0].name == f"{job.id}_0.png"
    assert job.id in listed and stats.total_jobs >= 1


def test_generate_on_the_replicate_double(mediagen, provider, tmp_path):  # noqa: F811
    provider("poll")
    job = mediagen.generate(
        unique_prompt("lib replicate"), model="black-forest-labs/flux-schnell", width=512, height=512
    )
    assert job.status == JobStatus.COMPLETED
    [path] = job.download(tmp_path)
    assert path.name == f"{job.id}_0.webp" and Image.open(path).format == "WEBP"


class FlakyStorage(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Real HTTP, except that the first `failures` requests for an output file (presigned URLs)
    get a 503 from 'storage' (or, with `drop`, a dropped connection)."""

    def __init__(self, failures: int, drop: bool = False) -> None:
        self.failures, self.drop, self.file_requests = failures, drop, 0
        self._sync, self._async = httpx.HTTPTransport(), httpx.AsyncHTTPTransport()

    def _fail(self, request: httpx.Request) -> httpx.Response | None:
        if "X-Amz-Signature" not in str(request.url):
            return None
        self.file_requests += 1
        if self.file_requests > self.failures:
            return None
        if self.drop:
            raise httpx.RemoteProtocolError("connection dropped", request=request)
        return httpx.Response(503, request=request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._fail(request) or self._sync.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._fail(request) or await self._async.handle_async_request(request)


@pytest.mark.parametrize("drop", [False, True], ids=["503", "dropped"])
def test_downloads_are_retried_by_both_clients(emulator, tmp_path, drop):
    fast = RetryPolicy(base_delay=0.01, max_delay=0.01)
    sync_storage = FlakyStorage(failures=2, drop=drop)
    with Client(emulator.gateway.url, transport=sync_storage, retry=fast) as client:
        job = client.generate(unique_prompt("flaky storage"))
        [path] = job.download(tmp_path / "sync")
    assert Image.open(path).format == "PNG" and sync_storage.file_requests == 3

    async_storage = FlakyStorage(failures=2, drop=drop)

    async def run():
        async with AsyncClient(emulator.gateway.url, transport=async_storage, retry=fast) as client:
            return await (await client.jobs.get(job.id)).download(tmp_path / "async")

    [path] = asyncio.run(run())
    assert Image.open(path).format == "PNG" and async_storage.file_requests == 3


def test_a_download_that_keeps_failing_is_a_download_error(emulator, tmp_path):
    from mediagen.errors import DownloadError

    storage = FlakyStorage(failures=100)

    async def run(job_id: str):
        async with AsyncClient(
            emulator.gateway.url, transport=storage, retry=RetryPolicy(max_retries=2, base_delay=0.01)
        ) as client:
            return await (await client.jobs.get(job_id)).download(tmp_path)

    with Client(emulator.gateway.url) as client:
        job_id = client.generate(unique_prompt("down storage")).id
    with pytest.raises(DownloadError, match="HTTP 503"):
        asyncio.run(run(job_id))
    assert storage.file_requests == 3
