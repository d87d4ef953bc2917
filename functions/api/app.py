"""HTTP API (API Gateway HTTP API, payload v2): the old service's routes, validated, with OpenAPI."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths

from shared import auth, idempotency, jobs, webhooks
from shared import health as health_checks
from shared.errors import InvalidParameter, QuotaExceeded, ServiceError
from shared.http_input import StrictRequestValidation
from shared.job_store import store
from shared.models import GenerateRequest, JobStatus, WebhookEvent
from shared.observability import logger, metrics, tracer
from shared.schemas import (
    API_PREFIX,
    WEBHOOK_PATH,
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
    WebhookAck,
)
from shared.settings import get_settings

VERSION = "1.0.0"
TITLE = "Media generation API"
DESCRIPTION = "Submit a prompt, follow the job, download the images. OpenAPI document: /openapi.json"
JobId = Annotated[str, Path(min_length=1, max_length=64, description="The job id returned by generate")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=idempotency.KEY_MAX_LENGTH,
        description="Any unique string (e.g. a UUID): a repeat within 24 h answers with the first response",
    ),
]
ERROR_DESCRIPTIONS = {
    401: "API key missing, malformed, unknown or revoked (the webhook: signature missing, invalid or stale)",
    429: "Over the key's quota: ACTIVE_JOBS_LIMIT or RATE_LIMITED; wait `Retry-After` seconds",
    404: "No such job",
    409: "Not possible in the job's current status, or the same Idempotency-Key is still in progress",
    413: "Body larger than the API accepts",
    415: "Body is not JSON (send Content-Type: application/json)",
    422: "Invalid input (body, path or query): `errors` names each offending field",
    500: "Unexpected error on our side; details are in the logs only",
    503: "Not queued: the job was marked failed, submit it again later",
}


def responses(success: int, description: str, *errors: int) -> dict:
    """OpenAPI responses of a route: its success body (from the return type) and its errors.
    Every route can answer 422 (unknown query parameters) and 500."""
    documented: dict = {success: {"description": description}}
    for code in sorted({*errors, 422, 500}):
        documented[code] = {
            "description": ERROR_DESCRIPTIONS[code],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorBody}},
        }
    return documented


# Client apps send an API key (the authorizer checks it); operators sign with SigV4 (IAM) on
# /admin/v1/<route>. Either one: every route but the provider webhook needs one when deployed.
SIGV4 = "sigv4"
SECURITY_SCHEMES = {
    "apiKey": HTTPBearer(description="An API key from `make api-key NAME=...` (mg_...)"),
    SIGV4: APIKey(
        name="Authorization",
        in_=APIKeyIn.header,
        description="AWS Signature Version 4 of an IAM principal with execute-api:Invoke, on /admin/v1/<route>",
        openapi_extensions={"x-amazon-apigateway-authtype": "awsSigv4"},
    ),
}
SIGNED = [{"apiKey": []}, {SIGV4: []}]

app = APIGatewayHttpResolver(enable_validation=True)
# Powertools' validation always runs first in a route's chain: ours extends it (JSON-only bodies,
# parsed strictly; unknown query parameters refused).
app._request_validation_middleware = StrictRequestValidation()
app.configure_openapi(title=TITLE, version=VERSION, description=DESCRIPTION, security_schemes=SECURITY_SCHEMES)
# The Swagger UI assets are inlined (works offline); gzip keeps the 1.7 MB page small on the wire.
app.enable_swagger(path="/docs", compress=True, persist_authorization=True)


@app.post(
    f"{API_PREFIX}/generate",
    status_code=202,
    responses=responses(202, "Accepted", 413, 415, 422, 503),
    operation_id="generate",
    security=SIGNED,
)
def generate(request: GenerateRequest, idempotency_key: IdempotencyKey = None) -> Response[JobAccepted]:
    """Accept a generation job. Answers once the job is stored and queued."""
    body = request.model_dump(mode="json", exclude_unset=True)
    caller = _caller()
    answer = idempotency.once(
        idempotency_key, "generate", body, lambda: _json(JobAccepted.of(jobs.submit(request, caller))), caller.owner
    )
    return _accepted(JobAccepted.model_validate(answer))


@app.get(
    f"{API_PREFIX}/status/<job_id>",
    responses=responses(200, "Status", 404),
    operation_id="getJobStatus",
    security=SIGNED,
)
def job_status(job_id: JobId) -> JobStatusView:
    """Status and progress (0-100) of a job: cheap, for polling."""
    job = store().get(job_id, _caller().scope)
    return JobStatusView.of(job, jobs.queue_estimate(job))


@app.get(
    f"{API_PREFIX}/jobs/<job_id>", responses=responses(200, "The job", 404), operation_id="getJob", security=SIGNED
)
def job_detail(job_id: JobId) -> JobDetail:
    """Everything about a job, with presigned download URLs of its outputs."""
    job = store().get(job_id, _caller().scope)
    return JobDetail.of(job, jobs.queue_estimate(job))


@app.get(f"{API_PREFIX}/jobs", responses=responses(200, "One page of jobs"), operation_id="listJobs", security=SIGNED)
def list_jobs(
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page")] = None,
    owner: Annotated[str | None, Query(max_length=128, description="Operators (/admin/v1) only: one owner's")] = None,
) -> JobPage:
    """The caller's jobs, newest first, one page at a time."""
    page, next_cursor = store().list_jobs(status=status, limit=limit, cursor=cursor, owner=_scope(owner))
    return JobPage(jobs=[JobSummary.of(job) for job in page], next_cursor=next_cursor)


@app.post(
    f"{API_PREFIX}/jobs/<job_id>/cancel",
    responses=responses(200, "Cancelled", 404, 409),
    operation_id="cancelJob",
    security=SIGNED,
)
def cancel_job(job_id: JobId) -> JobStatusView:
    """Cancel a pending or processing job."""
    return JobStatusView.of(jobs.cancel(job_id, _caller().scope))


@app.post(
    f"{API_PREFIX}/jobs/<job_id>/retry",
    status_code=202,
    responses=responses(202, "Accepted", 404, 409, 503),
    operation_id="retryJob",
    security=SIGNED,
)
def retry_job(job_id: JobId, idempotency_key: IdempotencyKey = None) -> Response[JobAccepted]:
    """Run a failed or cancelled job again, as a new attempt of the same job."""

    caller = _caller()

    def new_attempt() -> dict:
        job = jobs.retry(job_id, caller)
        return _json(JobAccepted.of(job, message=f"Attempt {job.attempt} accepted"))

    answer = idempotency.once(idempotency_key, "retry", {"job_id": job_id}, new_attempt, caller.owner)
    return _accepted(JobAccepted.model_validate(answer))


@app.get(f"{API_PREFIX}/models", responses=responses(200, "The models"), operation_id="listModels", security=SIGNED)
def list_models() -> ModelList:
    """The models a request may name, and the default one."""
    return ModelList.of(get_settings())


@app.post(
    WEBHOOK_PATH,
    responses=responses(200, "Delivery processed (or ignored as stale or duplicate)", 401),
    tags=["provider"],
    operation_id="replicateWebhook",
)
def replicate_webhook(
    job_id: Annotated[str, Query(max_length=64)],
    attempt: Annotated[int, Query(ge=1)],
    nonce: Annotated[str, Query(max_length=64)],
) -> WebhookAck:
    """Replicate's prediction webhooks, authenticated by their Standard Webhooks signature."""
    body = app.current_event.decoded_body or ""
    webhooks.authenticate(app.current_event.headers, body)
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidParameter("body", "not a prediction") from None
    if not isinstance(payload, dict) or "id" not in payload:
        raise InvalidParameter("body", "not a prediction")
    outcome = webhooks.deliver(job_id, attempt, nonce, payload)
    # Progress arrives every few seconds per running job: at INFO only what is out of the ordinary.
    level = logging.DEBUG if outcome in webhooks.ROUTINE_OUTCOMES else logging.INFO
    logger.log(level, "Webhook delivered", extra={"job_id": job_id, "outcome": outcome})
    return WebhookAck(outcome=outcome)


@app.get(f"{API_PREFIX}/stats", responses=responses(200, "The counters"), operation_id="getStats", security=SIGNED)
def stats(
    owner: Annotated[str | None, Query(max_length=128, description="Operators (/admin/v1) only: one owner's")] = None,
) -> Stats:
    """The caller's jobs per status, success rate and mean duration (read from counters: constant cost)."""
    return Stats.of(store().stats(_scope(owner)))


@app.get(
    "/health",
    responses=responses(200, "Alive (and, with deep=true, every part reachable)")
    | {
        503: {
            "description": "A deep check found a part unreachable",
            "content": {content_types.APPLICATION_JSON: {"model": DeepHealth}},
        },
    },
    operation_id="health",
    security=SIGNED,
)
def health(
    deep: Annotated[bool, Query(description="Also check that the table, queue, bucket and workflow answer")] = False,
) -> Response[DeepHealth | Health]:
    """Liveness (calls nothing); with `deep=true`, one cheap call to each resource a job needs."""
    mode = "mock" if get_settings().mock_mode else "replicate"
    if not deep:
        return Response(200, content_types.APPLICATION_JSON, Health(status="healthy", mode=mode, version=VERSION))
    checks = health_checks.check()
    healthy = set(checks.values()) == {"ok"}
    body = DeepHealth(status="healthy" if healthy else "unhealthy", mode=mode, version=VERSION, checks=checks)
    return Response(status_code=200 if healthy else 503, content_type=content_types.APPLICATION_JSON, body=body)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[str]:
    """The OpenAPI document where the old FastAPI service served it."""
    schema = app.get_openapi_json_schema()
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=with_webhooks(schema))


def with_webhooks(schema: str) -> str:
    """Add the client webhooks (OpenAPI 3.1 `webhooks`): Powertools does not generate them."""
    document = json.loads(schema)
    headers = {
        "webhook-id": "Stable per event: deduplicate retries by it",
        "webhook-timestamp": "Unix seconds when this try was sent",
        "webhook-signature": "v1,<base64 HMAC-SHA256 of id.timestamp.body> with the whsec_ signing secret of the "
        "API key that submitted the job (or the deployment's); space-separated, one per valid secret (two during "
        "a rotation's grace period): accept any that matches",
    }
    body = {
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"type": "string", "enum": [e.value for e in WebhookEvent]},
            "timestamp": {"type": "string", "format": "date-time", "description": "When the event happened"},
            "data": {"$ref": "#/components/schemas/JobDetail"},
        },
    }
    document["webhooks"] = {
        event.value: {
            "post": {
                "summary": f"{event.value} (if listed in the request's webhook_events)",
                "description": "Signed the Standard Webhooks way; retried on timeouts, 429 and 5xx.",
                "parameters": [
                    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": d}
                    for name, d in headers.items()
                ],
                "requestBody": {"required": True, "content": {content_types.APPLICATION_JSON: {"schema": body}}},
                "responses": {"2XX": {"description": "Received; anything else but 429 and 5xx stops retries"}},
            }
        }
        for event in WebhookEvent
    }
    return json.dumps(document)


# ---- errors: one shape for all of them ---------------------------------------------------------
@app.exception_handler(ServiceError)
def service_error(exc: ServiceError) -> Response:
    if isinstance(exc, webhooks.WebhookRejected):
        logger.warning("Webhook rejected", extra={"reason": exc.reason})
    if isinstance(exc, InvalidParameter):
        error = FieldError(field=exc.field, location=exc.location, message=exc.reason)
        return _error(422, exc.code, exc.message, [error])
    if isinstance(exc, QuotaExceeded):
        return _error(429, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)})
    return _error(exc.status_code, exc.code, exc.message)


@app.exception_handler(RequestValidationError)
def validation_error(exc: RequestValidationError) -> Response:
    errors = [_field_error(e) for e in exc.errors()]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "Invalid request"
    return _error(422, "VALIDATION_ERROR", detail, errors)


@app.not_found
def not_found(_: NotFoundError) -> Response:
    return _error(404, "NOT_FOUND", f"No route for {app.current_event.http_method} {app.current_event.path}")


@app.exception_handler(Exception)
def unexpected_error(exc: Exception) -> Response:
    logger.exception("Unhandled error")
    return _error(500, "INTERNAL_ERROR", "Something went wrong on our side; try again")


def _field_error(error: dict) -> FieldError:
    location, *path = [str(part) for part in error.get("loc", ())] or ["body"]
    kind = error.get("type", "")
    if kind == "json_invalid":
        return FieldError(field="body", location="body", message="Body is not valid JSON")
    message = "Unknown field" if kind == "extra_forbidden" else error.get("msg") or kind.replace("_", " ")
    message = message.removeprefix("Value error, ")  # our own validators' messages, as written
    return FieldError(field=".".join(path) or location, location=location, message=message)


def _error(
    status: int, code: str, detail: str, errors: list[FieldError] | None = None, headers: dict | None = None
) -> Response:
    body = ErrorBody(code=code, detail=detail, errors=errors, request_id=_request_id())
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(exclude_none=True),
        headers=headers,
    )


def _caller() -> auth.Caller:
    """Who is calling (401 without a valid key where keys are required)."""
    return auth.caller_of(app.current_event.raw_event)


def _scope(owner: str | None) -> str | None:
    """Whose jobs a listing shows: the caller's; an operator's choice (None: everyone's)."""
    caller = _caller()
    return owner if caller.operator else caller.scope


def _request_id() -> str | None:
    try:
        return app.current_event.request_context.request_id
    except Exception:
        return None


def _json(body: JobAccepted) -> dict:
    return body.model_dump(mode="json")


def _accepted(body: JobAccepted) -> Response[JobAccepted]:
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={"Location": body.links.self},
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    idempotency.register_lambda_context(context)
    return app.resolve(auth.admin_as_api(event), context)
