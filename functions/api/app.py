"""HTTP API (API Gateway HTTP API, payload v2): the old service's routes, validated, with OpenAPI.

Routing, validation and the error shape are shared/http_api.py; the document and Swagger UI are
built from these declarations when first asked for (shared/openapi.py).
"""

from __future__ import annotations

import json
from functools import cache

from aws_lambda_powertools.logging import correlation_paths

from shared import auth, idempotency, jobs, usage
from shared import health as health_checks
from shared.http_api import Request, Response, Route, Router
from shared.job_store import store
from shared.models import GenerateRequest
from shared.observability import logger, metrics, tracer
from shared.openapi import API_KEY, IAM
from shared.schemas import (
    API_PREFIX,
    DeepHealth,
    Health,
    HealthQuery,
    IdempotencyHeaders,
    JobAccepted,
    JobDetail,
    JobPage,
    JobPath,
    JobStatusView,
    JobSummary,
    ListQuery,
    ModelList,
    Stats,
    StatsQuery,
)
from shared.settings import get_settings

VERSION = "1.0.0"
TITLE = "Media generation API"
DESCRIPTION = "Submit a prompt, follow the job, download the images. OpenAPI document: /openapi.json"


def _authenticate(route: Route, request: Request) -> None:
    """Every /api/v1 route needs a caller (401 without a valid key where keys are required),
    checked before the request is validated."""
    if route.path.startswith(API_PREFIX):
        request.caller = auth.caller_of(request.event)


api = Router(guard=_authenticate)


@api.post(
    f"{API_PREFIX}/generate",
    operation_id="generate",
    status=202,
    response=JobAccepted,
    description="Accepted",
    headers=IdempotencyHeaders,
    body=GenerateRequest,
    errors=(409, 413, 415, 429, 503),
    security=API_KEY,
)
def generate(request: Request) -> Response:
    """Accept a generation job. Answers once the job is stored and queued."""
    job_request: GenerateRequest = request.body
    caller = _caller(request)
    answer = idempotency.once(
        request.headers.idempotency_key,
        "generate",
        job_request.model_dump(mode="json", exclude_unset=True),
        lambda: JobAccepted.of(jobs.submit(job_request, caller)).model_dump(mode="json"),
        caller.owner,
        request.context,
    )
    return _accepted(JobAccepted.model_validate(answer))


@api.get(
    f"{API_PREFIX}/status/{{job_id}}",
    operation_id="getJobStatus",
    response=JobStatusView,
    description="Status",
    path_params=JobPath,
    errors=(404,),
    security=API_KEY,
)
def job_status(request: Request) -> JobStatusView:
    """Status and progress (0-100) of a job: cheap, for polling."""
    job = store().get(request.path.job_id, _caller(request).scope)
    return JobStatusView.of(job, jobs.queue_estimate(job))


@api.get(
    f"{API_PREFIX}/jobs/{{job_id}}",
    operation_id="getJob",
    response=JobDetail,
    description="The job",
    path_params=JobPath,
    errors=(404,),
    security=API_KEY,
)
def job_detail(request: Request) -> JobDetail:
    """Everything about a job, with presigned download URLs of its outputs."""
    job = store().get(request.path.job_id, _caller(request).scope)
    return JobDetail.of(job, jobs.queue_estimate(job))


@api.get(
    f"{API_PREFIX}/jobs",
    operation_id="listJobs",
    response=JobPage,
    description="One page of jobs",
    query=ListQuery,
    security=API_KEY,
)
def list_jobs(request: Request) -> JobPage:
    """The caller's jobs, newest first, one page at a time."""
    query: ListQuery = request.query
    owner = _scope(request, query.owner)
    page, next_cursor = store().list_jobs(status=query.status, limit=query.limit, cursor=query.cursor, owner=owner)
    return JobPage(jobs=[JobSummary.of(job) for job in page], next_cursor=next_cursor)


@api.post(
    f"{API_PREFIX}/jobs/{{job_id}}/cancel",
    operation_id="cancelJob",
    response=JobStatusView,
    description="Cancelled",
    path_params=JobPath,
    errors=(404, 409),
    security=API_KEY,
)
def cancel_job(request: Request) -> JobStatusView:
    """Cancel a pending or processing job."""
    return JobStatusView.of(jobs.cancel(request.path.job_id, _caller(request).scope))


@api.post(
    f"{API_PREFIX}/jobs/{{job_id}}/retry",
    operation_id="retryJob",
    status=202,
    response=JobAccepted,
    description="Accepted",
    path_params=JobPath,
    headers=IdempotencyHeaders,
    errors=(404, 409, 429, 503),
    security=API_KEY,
)
def retry_job(request: Request) -> Response:
    """Run a failed or cancelled job again, as a new attempt of the same job."""
    job_id, caller = request.path.job_id, _caller(request)

    def new_attempt() -> dict:
        job = jobs.retry(job_id, caller)
        return JobAccepted.of(job, message=f"Attempt {job.attempt} accepted").model_dump(mode="json")

    key = request.headers.idempotency_key
    answer = idempotency.once(key, "retry", {"job_id": job_id}, new_attempt, caller.owner, request.context)
    return _accepted(JobAccepted.model_validate(answer))


@api.get(
    f"{API_PREFIX}/models",
    operation_id="listModels",
    response=ModelList,
    description="The models",
    security=API_KEY,
)
def list_models(request: Request) -> ModelList:
    """The models a request may name, and the default one."""
    return ModelList.of(get_settings())


@api.get(
    f"{API_PREFIX}/stats",
    operation_id="getStats",
    response=Stats,
    description="The counters",
    query=StatsQuery,
    security=API_KEY,
)
def stats(request: Request) -> Stats:
    """The caller's jobs per status, success rate and mean duration (read from counters: constant cost)."""
    return Stats.of(store().stats(_scope(request, request.query.owner)))


@api.get(
    "/health",
    operation_id="health",
    response=DeepHealth | Health,
    description="Alive (and, with deep=true, every part reachable)",
    query=HealthQuery,
    other_responses={503: ("A deep check found a part unreachable", DeepHealth)},
    security=IAM,
)
def health(request: Request) -> Health | Response:
    """Liveness (calls nothing); with `deep=true`, one cheap call to each resource a job needs."""
    mode = "mock" if get_settings().mock_mode else "replicate"
    if not request.query.deep:
        return Health(status="healthy", mode=mode, version=VERSION)
    checks = health_checks.check()
    healthy = set(checks.values()) == {"ok"}
    body = DeepHealth(status="healthy" if healthy else "unhealthy", mode=mode, version=VERSION, checks=checks)
    return Response(200 if healthy else 503, body)


@api.get("/openapi.json", documented=False)
def openapi_document(request: Request) -> Response:
    """The OpenAPI document where the old FastAPI service served it."""
    return Response(200, openapi_json())


@api.get("/docs", documented=False)
def docs(request: Request) -> Response:
    """Swagger UI, its assets inlined (works offline); gzip keeps the 1.7 MB page small on the wire."""
    from shared.openapi import swagger_html

    return Response(200, swagger_html(openapi_json(), TITLE), content_type="text/html", compress=True)


@cache
def openapi_json() -> str:
    """Built at the first request for it, once per container."""
    from shared.openapi import document

    return json.dumps(document(api.routes, title=TITLE, version=VERSION, description=DESCRIPTION))


def _caller(request: Request) -> auth.Caller:
    """Who is calling (found by the router's guard, _authenticate)."""
    return request.caller


def _scope(request: Request, owner: str | None) -> str | None:
    """Whose jobs a listing shows: the caller's; an operator's choice (None: everyone's)."""
    caller = _caller(request)
    return owner if caller.operator else caller.scope


def _accepted(body: JobAccepted) -> Response:
    return Response(202, body, headers={"Location": body.links.self})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    usage.start(context).add(api_requests=1)  # a job this request writes carries it (shared/usage.py)
    return api.resolve(auth.admin_as_api(event), context)
