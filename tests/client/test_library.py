"""The mediagen library end to end against the emulation: the real HTTP API, the real workflow."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import threading
import types
import typing
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from mediagen import AsyncClient, Client, JobStatus, NotFound, RateLimited, RetryPolicy, ValidationError, WebhookEvent
from mediagen.models import MODELS, Accepted, Detail, JobPage, ModelList, Stats, StatusView, field_names
from PIL import Image

from shared.errors import PermanentError
from tests.conftest import unique_prompt, wait_for
from tests.integration.test_client_webhooks import hooks, receivers, settled  # noqa: F401  (fixtures)
from tests.integration.test_idempotency import jobs_with_prompt
from tests.integration.test_replicate import double, predictions_for, provider  # noqa: F401  (fixtures)


@pytest.fixture
def mediagen(emulator):
    with Client(emulator.gateway.url) as client:
        client._sleep = lambda seconds: None  # retries are asserted, not waited for
        yield client


# (schema, field) the client's models leave out on purpose, with the reason. None today: a field
# the API adds must be added to the client's model, or listed here.
DELIBERATELY_OMITTED: dict[tuple[str, str], str] = {}
# What the client reads each route's answer as.
ROUTES = {
    ("post", "/api/v1/generate"): Accepted,
    ("get", "/api/v1/status/{job_id}"): StatusView,
    ("get", "/api/v1/jobs/{job_id}"): Detail,
    ("get", "/api/v1/jobs"): JobPage,
    ("post", "/api/v1/jobs/{job_id}/cancel"): StatusView,
    ("post", "/api/v1/jobs/{job_id}/retry"): Accepted,
    ("get", "/api/v1/models"): ModelList,
    ("get", "/api/v1/stats"): Stats,
}
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def mismatch(hint: Any, schema: dict, components: dict) -> str | None:
    """Why a client field typed `hint` cannot hold what the OpenAPI `schema` describes; None if it can."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    inner = [a for a in args if a is not type(None)]
    if len(inner) == 1 and len(args) > 1:  # X | None
        hint = inner[0]
    if "anyOf" in schema:
        if {"type": "null"} in schema["anyOf"] and type(None) not in args:
            return "the API may send null"
        found = [mismatch(hint, s, components) for s in schema["anyOf"] if s != {"type": "null"}]
        return next((m for m in found if m), None)
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if dataclasses.is_dataclass(hint):
            return None if name == hint.SCHEMA else f"{hint.__name__} mirrors {hint.SCHEMA}, the API sends {name}"
        return mismatch(hint, components[name], components)
    if hint is Any or not ({"type", "enum"} & set(schema)):  # either side: anything
        return None
    kind, origin = schema.get("type"), typing.get_origin(hint) or hint
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values, theirs = sorted(e.value for e in hint), sorted(schema.get("enum", []))
        return None if values == theirs else f"{hint.__name__} is {values}, the API's {theirs}"
    if origin is list:
        if kind != "array":
            return f"a list, the API's {kind}"
        return mismatch(typing.get_args(hint)[0], schema["items"], components)
    if origin is dict:
        if kind != "object":
            return f"a dict, the API's {kind}"
        keys, values = typing.get_args(hint)
        for part, sub in ((keys, schema.get("propertyNames")), (values, schema.get("additionalProperties"))):
            if isinstance(sub, dict) and (problem := mismatch(part, sub, components)):
                return problem
        return None
    if dataclasses.is_dataclass(hint):
        return f"{hint.__name__}, the API's inline {kind}"
    if hint is datetime:
        return None if (kind, schema.get("format")) == ("string", "date-time") else f"a datetime, the API's {kind}"
    return None if JSON_TYPES.get(hint) == kind else f"{getattr(hint, '__name__', hint)}, the API's {kind}"


def test_client_models_match_the_live_openapi_components(api):
    document = api.get("/openapi.json").json()
    components = document["components"]["schemas"]
    for (method, path), model in ROUTES.items():
        [answer] = [r for code, r in document["paths"][path][method]["responses"].items() if code.startswith("2")]
        assert answer["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model.SCHEMA}"}
    problems = []
    for model in MODELS:
        schema = components[model.SCHEMA]
        fields, required = field_names(model)
        theirs = set(schema["properties"])
        omitted = {f for s, f in DELIBERATELY_OMITTED if s == model.SCHEMA}
        problems += [f"{model.__name__}.{f}: the API has no such field" for f in sorted(fields - theirs)]
        problems += [f"{model.SCHEMA}.{f}: missing from {model.__name__}" for f in sorted(theirs - fields - omitted)]
        if required != set(schema.get("required", [])):
            problems.append(f"{model.__name__}: required {sorted(required)}, the API's {sorted(schema['required'])}")
        hints = typing.get_type_hints(model)
        for name in sorted(fields & theirs):
            if problem := mismatch(hints[name], schema["properties"][name], components):
                problems.append(f"{model.__name__}.{name}: {problem}")
    assert problems == []


@pytest.mark.parametrize(
    "hint, schema, expected",
    [
        (int, {"type": "string"}, "int, the API's string"),
        (float, {"type": "integer"}, "float, the API's integer"),
        (str, {"anyOf": [{"type": "string"}, {"type": "null"}]}, "the API may send null"),
        (list[int], {"type": "array", "items": {"type": "number"}}, "int, the API's number"),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "boolean"}}, "float, the API's boolean"),
        (JobStatus, {"$ref": "#/components/schemas/S"}, "JobStatus is"),
        (
            Detail,
            {"$ref": "#/components/schemas/JobStatusView"},
            "Detail mirrors JobDetail, the API sends JobStatusView",
        ),
        (datetime, {"type": "string"}, "a datetime, the API's string"),
        (str | None, {"anyOf": [{"type": "string"}, {"type": "null"}]}, None),
        (dict[str, Any], {"$ref": "#/components/schemas/O"}, None),
    ],
)
def test_the_drift_check_tells_incompatible_types(hint, schema, expected):
    components = {"S": {"type": "string", "enum": ["pending", "gone"]}, "O": {"type": "object"}}
    found = mismatch(hint, schema, components)
    assert found == expected if expected is None else found.startswith(expected), found


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


def test_failure_and_cancel_on_the_replicate_double(mediagen, provider, double):  # noqa: F811
    """The provider's own failure reaches the client as the job's error; a cancel reaches the
    prediction on the provider."""
    from local.replicate_double import Fault

    provider("poll")
    prompt = unique_prompt("lib replicate fails")
    double.script(prompt, Fault.fail("CUDA out of memory"))
    failed = mediagen.generate(prompt, model="black-forest-labs/flux-schnell")
    assert failed.status == JobStatus.FAILED and failed.error.code == "GENERATION_FAILED"
    assert "CUDA out of memory" in failed.error.message

    prompt = unique_prompt("lib replicate cancel")
    double.script(prompt, Fault.slow(10))
    job = mediagen.generate(prompt, model="black-forest-labs/flux-schnell", wait=False)
    wait_for(lambda: predictions_for(double, prompt), timeout=20, what="the prediction created")
    assert job.cancel().status == JobStatus.CANCELLED
    [prediction] = predictions_for(double, prompt)
    wait_for(lambda: prediction.status == "canceled", timeout=20, what="the prediction cancelled on the provider")


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


def test_a_submit_retried_while_the_first_is_in_flight_ends_with_the_original_job(emulator, monkeypatch):
    """The first POST's answer times out while the service is still storing it; the retry (same
    Idempotency-Key) gets 409 IDEMPOTENCY_IN_PROGRESS, backs off, and then gets the first job."""
    from shared import jobs

    entered, release, first_answered = threading.Event(), threading.Event(), threading.Event()
    real_submit = jobs.submit

    def slow_submit(request, *args):
        entered.set()
        assert release.wait(30)
        return real_submit(request, *args)

    monkeypatch.setattr(jobs, "submit", slow_submit)

    class SlowFirst(httpx.BaseTransport):
        """The first request reaches the service, but its answer 'times out'; the rest pass, seen."""

        def __init__(self) -> None:
            self.real, self.requests, self.statuses, self.first = httpx.HTTPTransport(), [], [], {}

        def handle_request(self, request):
            self.requests.append(request)
            if len(self.requests) == 1:
                threading.Thread(target=self._first, args=(request,), daemon=True).start()
                assert entered.wait(30)
                raise httpx.ReadTimeout("timed out", request=request)
            response = self.real.handle_request(request)
            response.read()
            self.statuses.append(response.status_code)
            if response.status_code == 409:
                release.set()
            return response

        def _first(self, request):
            response = self.real.handle_request(request)
            self.first = {"status": response.status_code, "body": response.read()}
            first_answered.set()

    def sleep(seconds: float) -> None:  # the backoff after a 409: time enough for the first request to finish
        if release.is_set():
            assert first_answered.wait(30)

    transport, prompt = SlowFirst(), unique_prompt("in flight")
    with Client(emulator.gateway.url, transport=transport) as client:
        client._sleep = sleep
        job = client.generate(prompt, wait=False)

    assert transport.statuses[0] == 409 and transport.statuses[-1] == 202, transport.statuses
    assert len({r.headers["idempotency-key"] for r in transport.requests}) == 1
    assert transport.first["status"] == 202 and job.id in transport.first["body"].decode()
    assert jobs_with_prompt(prompt) == [job.id]


def test_sync_and_async_generate_report_the_same_way(emulator, configure):
    """`on_update` right after the submit (before any poll), then once per change, in both clients."""
    configure(MOCK_GENERATION_SECONDS="1")

    class Counting(httpx.BaseTransport, httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.count, self._sync, self._async = 0, httpx.HTTPTransport(), httpx.AsyncHTTPTransport()

        def handle_request(self, request):
            self.count += 1
            return self._sync.handle_request(request)

        async def handle_async_request(self, request):
            self.count += 1
            return await self._async.handle_async_request(request)

    def recorder(transport: Counting, seen: list):
        return lambda job: seen.append((transport.count, job.status, job.progress, job.queue_position))

    sync_transport, sync_seen = Counting(), []
    with Client(emulator.gateway.url, transport=sync_transport) as client:
        client.generate(unique_prompt("sync updates"), on_update=recorder(sync_transport, sync_seen))

    async_transport, async_seen = Counting(), []

    async def run():
        async with AsyncClient(emulator.gateway.url, transport=async_transport) as client:
            await client.generate(unique_prompt("async updates"), on_update=recorder(async_transport, async_seen))

    asyncio.run(run())
    for seen in (sync_seen, async_seen):
        assert seen[0][:2] == (1, JobStatus.PENDING), seen  # after the POST, before the first poll
        assert seen[-1][1] == JobStatus.COMPLETED, seen
        states = [s[1:] for s in seen]
        assert all(a != b for a, b in itertools.pairwise(states)), seen  # only changes


def test_generate_sends_a_webhook_and_the_events_it_wants(mediagen, api, hooks):  # noqa: F811
    receiver = hooks()
    events = [WebhookEvent.PROCESSING, "job.completed"]

    job = mediagen.generate(unique_prompt("lib webhook"), webhook=receiver.url, webhook_events=events)

    assert job.status == JobStatus.COMPLETED
    assert job.data.request["webhook"] == receiver.url
    assert job.data.request["webhook_events"] == ["job.processing", "job.completed"]
    settled(api, job.id, count=2)
    deliveries = job.refresh().data.webhook_deliveries
    assert sorted(d.event for d in deliveries) == [WebhookEvent.COMPLETED, WebhookEvent.PROCESSING]
    assert {d.state for d in deliveries} == {"delivered"}
    assert sorted(r["body"]["type"] for r in receiver.verified()) == ["job.completed", "job.processing"]


def test_async_generate_sends_a_webhook(emulator, api, hooks):  # noqa: F811
    receiver = hooks()

    async def run():
        async with AsyncClient(emulator.gateway.url) as client:
            return await client.generate(unique_prompt("async webhook"), webhook=receiver.url)

    job = asyncio.run(run())
    assert job.data.request["webhook"] == receiver.url
    [delivery] = settled(api, job.id)
    assert (delivery["event"], delivery["state"]) == ("job.completed", "delivered")
    assert [r["body"]["data"]["job_id"] for r in receiver.verified()] == [job.id]
