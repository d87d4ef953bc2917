"""The cold-start benchmark's baseline: the api function's routes on FastAPI + Mangum, the usual way
to put an ASGI app on Lambda. Never deployed; bundled like the functions (infra/bundle.py,
`fastapi_baseline`) and measured beside the api by bench/cold_start.py.

A fair twin: the same routes, parameters, bodies and answers, calling the same shared/ code with
the same pins, the same Powertools logger, metrics and tracer around the handler, the same error
shape; FastAPI's own validation, OpenAPI document (/openapi.json) and Swagger UI (/docs).
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.logging import correlation_paths
from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mangum import Mangum

from shared import auth, idempotency, jobs
from shared import health as health_checks
from shared.errors import InvalidParameter, QuotaExceeded, ServiceError
from shared.job_store import store
from shared.models import GenerateRequest, JobStatus
from shared.observability import logger, metrics, tracer
from shared.schemas import (
    API_PREFIX,
    DeepHealth,
    ErrorBody,
    FieldError,
    Health,
    JobAccepted,
    JobDetail,
    JobPage,
    JobStatusView,
    JobSummary,
    ModelList,
    Stats,
)
from shared.settings import get_settings

VERSION = "1.0.0"
JobId = Annotated[str, Path(min_length=1, max_length=64, description="The job id returned by generate")]
IdempotencyKey = Annotated[str | None, Header(alias="idempotency-key", min_length=1, max_length=255)]
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 409, 413, 415, 422, 503)}

app = FastAPI(title="Media generation API", version=VERSION, responses=ERRORS)


@app.post(f"{API_PREFIX}/generate", status_code=202, response_model=JobAccepted, operation_id="generate")
def generate(
    body: GenerateRequest, request: Request, idempotency_key: IdempotencyKey = None
) -> JSONResponse | JobAccepted:
    caller = auth.caller_of(request.scope["aws.event"])
    answer = idempotency.once(
        idempotency_key,
        "generate",
        body.model_dump(mode="json", exclude_unset=True),
        lambda: JobAccepted.of(jobs.submit(body, caller)).model_dump(mode="json"),
        caller.owner,
        request.scope["aws.context"],
    )
    return JSONResponse(answer, status_code=202, headers={"Location": answer["links"]["self"]})


@app.get(f"{API_PREFIX}/status/{{job_id}}", response_model=JobStatusView, operation_id="getJobStatus")
def job_status(job_id: JobId, request: Request) -> JobStatusView:
    job = store().get(job_id, auth.caller_of(request.scope["aws.event"]).scope)
    return JobStatusView.of(job, jobs.queue_estimate(job))


@app.get(f"{API_PREFIX}/jobs/{{job_id}}", response_model=JobDetail, operation_id="getJob")
def job_detail(job_id: JobId, request: Request) -> JobDetail:
    job = store().get(job_id, auth.caller_of(request.scope["aws.event"]).scope)
    return JobDetail.of(job, jobs.queue_estimate(job))


@app.get(f"{API_PREFIX}/jobs", response_model=JobPage, operation_id="listJobs")
def list_jobs(
    request: Request,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    owner: Annotated[str | None, Query(max_length=128)] = None,
) -> JobPage:
    scope = _scope(request, owner)
    page, next_cursor = store().list_jobs(status=status, limit=limit, cursor=cursor, owner=scope)
    return JobPage(jobs=[JobSummary.of(job) for job in page], next_cursor=next_cursor)


@app.post(f"{API_PREFIX}/jobs/{{job_id}}/cancel", response_model=JobStatusView, operation_id="cancelJob")
def cancel_job(job_id: JobId, request: Request) -> JobStatusView:
    return JobStatusView.of(jobs.cancel(job_id, auth.caller_of(request.scope["aws.event"]).scope))


@app.post(f"{API_PREFIX}/jobs/{{job_id}}/retry", status_code=202, response_model=JobAccepted, operation_id="retryJob")
def retry_job(job_id: JobId, request: Request, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    caller = auth.caller_of(request.scope["aws.event"])

    def new_attempt() -> dict:
        job = jobs.retry(job_id, caller)
        return JobAccepted.of(job, message=f"Attempt {job.attempt} accepted").model_dump(mode="json")

    context = request.scope["aws.context"]
    answer = idempotency.once(idempotency_key, "retry", {"job_id": job_id}, new_attempt, caller.owner, context)
    return JSONResponse(answer, status_code=202, headers={"Location": answer["links"]["self"]})


@app.get(f"{API_PREFIX}/models", response_model=ModelList, operation_id="listModels")
def list_models() -> ModelList:
    return ModelList.of(get_settings())


@app.get(f"{API_PREFIX}/stats", response_model=Stats, operation_id="getStats")
def stats(request: Request, owner: Annotated[str | None, Query(max_length=128)] = None) -> Stats:
    return Stats.of(store().stats(_scope(request, owner)))


@app.get("/health", response_model=DeepHealth | Health, operation_id="health")
def health(deep: bool = False) -> JSONResponse | Health:
    mode = "mock" if get_settings().mock_mode else "replicate"
    if not deep:
        return Health(status="healthy", mode=mode, version=VERSION)
    checks = health_checks.check()
    healthy = set(checks.values()) == {"ok"}
    body = DeepHealth(status="healthy" if healthy else "unhealthy", mode=mode, version=VERSION, checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if healthy else 503)


def _scope(request: Request, owner: str | None) -> str | None:
    caller = auth.caller_of(request.scope["aws.event"])
    return owner if caller.operator else caller.scope


# ---- errors: the api's one shape -----------------------------------------------------------------
def _error(
    request: Request, status: int, code: str, detail: str, errors: list[FieldError] | None = None
) -> JSONResponse:
    request_id = request.scope["aws.event"].get("requestContext", {}).get("requestId")
    body = ErrorBody(code=code, detail=detail, errors=errors, request_id=request_id)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status)


@app.exception_handler(ServiceError)
def service_error(request: Request, exc: ServiceError) -> JSONResponse:
    if isinstance(exc, InvalidParameter):
        error = FieldError(field=exc.field, location=exc.location, message=exc.reason)
        return _error(request, 422, exc.code, exc.message, [error])
    if isinstance(exc, QuotaExceeded):
        return _error(request, 429, exc.code, exc.message)
    return _error(request, exc.status_code, exc.code, exc.message)


@app.exception_handler(RequestValidationError)
def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for error in exc.errors():
        location, *path = [str(part) for part in error.get("loc", ())] or ["body"]
        errors.append(FieldError(field=".".join(path) or location, location=location, message=error.get("msg", "")))
    return _error(request, 422, "VALIDATION_ERROR", "; ".join(f"{e.field}: {e.message}" for e in errors), errors)


asgi = Mangum(app, lifespan="off", api_gateway_base_path="/")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    return asgi(auth.admin_as_api(event), context)
