"""What the HTTP API takes (path, query and header parameters; the body is GenerateRequest) and what
it answers: the response bodies, built from domain jobs.

Kept apart from the domain models so internal fields (version, TTL, S3 keys) never reach clients.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared import deliveries, output_files
from shared.idempotency import KEY_MAX_LENGTH
from shared.models import Adjustment, Attempt, GenerateRequest, Job, JobError, JobStatus
from shared.usage import Usage
from shared.usage import prices as usage_prices

API_PREFIX = "/api/v1"
# Where the provider posts its webhooks: the api's route, the URL the worker hands the provider,
# and the deployed route without an authorizer (infra/constructs/api.py) all read it here.
WEBHOOK_PATH = f"{API_PREFIX}/webhooks/replicate"


# ---- what the routes take besides the body ------------------------------------------------------
class JobPath(BaseModel):
    job_id: str = Field(min_length=1, max_length=64, description="The job id returned by generate")


class IdempotencyHeaders(BaseModel):
    idempotency_key: str | None = Field(
        default=None,
        alias="idempotency-key",
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        description="Any unique string (e.g. a UUID): a repeat within 24 h answers with the first response",
    )


OWNER_ONLY = "Operators (/admin/v1) only: one owner's"


class ListQuery(BaseModel):
    status: JobStatus | None = Field(default=None, description="Only jobs in this status")
    limit: int = Field(default=20, ge=1, le=100, description="Page size")
    cursor: str | None = Field(default=None, max_length=2048, description="`next_cursor` of the previous page")
    owner: str | None = Field(default=None, max_length=128, description=OWNER_ONLY)


class StatsQuery(BaseModel):
    owner: str | None = Field(default=None, max_length=128, description=OWNER_ONLY)


class WebhookQuery(BaseModel):
    """Where the worker told the provider to deliver: the attempt, and its nonce."""

    job_id: str = Field(max_length=64)
    attempt: int = Field(ge=1)
    nonce: str = Field(max_length=64)


class HealthQuery(BaseModel):
    deep: bool = Field(default=False, description="Also check that the table, queue, bucket and workflow answer")


# ---- what the routes answer ---------------------------------------------------------------------
class Links(BaseModel):
    self: str
    status: str
    cancel: str
    retry: str

    @classmethod
    def of(cls, job_id: str) -> Links:
        job = f"{API_PREFIX}/jobs/{job_id}"
        return cls(self=job, status=f"{API_PREFIX}/status/{job_id}", cancel=f"{job}/cancel", retry=f"{job}/retry")


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    message: str
    created_at: datetime
    links: Links

    @classmethod
    def of(cls, job: Job, message: str = "Job accepted") -> JobAccepted:
        return cls(
            job_id=job.job_id, status=job.status, message=message, created_at=job.created_at, links=Links.of(job.job_id)
        )


class Eta(BaseModel):
    """Estimates, not promises: from the dispatch rate and the model's recent durations."""

    start: float = Field(description="Seconds until the job should start")
    finish: float | None = Field(description="Seconds until it should be done (null: no recent durations)")


class JobStatusView(BaseModel):
    job_id: str
    status: JobStatus
    progress: int = Field(ge=0, le=100, description="Percent done; 100 once completed")
    attempt: int
    created_at: datetime
    updated_at: datetime
    error: JobError | None = None
    queue_position: int | None = Field(
        default=None, description="While pending: jobs ahead of this one in dispatch order (0: next); an estimate"
    )
    eta_seconds: Eta | None = Field(default=None, description="While pending: estimated seconds to start and finish")

    @classmethod
    def of(cls, job: Job, estimate: tuple[int, float, float | None] | None = None) -> JobStatusView:
        position, eta = (estimate[0], Eta(start=estimate[1], finish=estimate[2])) if estimate else (None, None)
        return cls(
            job_id=job.job_id,
            status=job.status,
            progress=job.progress,
            attempt=job.attempt,
            created_at=job.created_at,
            updated_at=job.updated_at,
            error=job.error,
            queue_position=position,
            eta_seconds=eta,
        )


class OutputView(BaseModel):
    index: int
    url: str = Field(description="Presigned download URL")
    expires_at: datetime = Field(description="When the download URL stops working")
    content_type: str
    width: int
    height: int
    size_bytes: int


class JobMetrics(BaseModel):
    """Where the current attempt's time went, in seconds (null until that step happened)."""

    queue_wait_seconds: float | None = Field(description="Queued (submit or retry) until its workflow started")
    time_to_start_seconds: float | None = Field(description="Queued until generation started")
    predict_seconds: float | None = Field(description="Generation itself (the provider's predict time)")
    output_copy_seconds: float | None = Field(description="Copying the outputs into storage")
    total_seconds: float | None = Field(description="Queued until finished")

    @classmethod
    def of(cls, job: Job) -> JobMetrics:
        queued = job.queued_at or job.created_at

        def since_queued(moment: datetime | None) -> float | None:
            return None if moment is None else round(max(0.0, (moment - queued).total_seconds()), 3)

        return cls(
            queue_wait_seconds=since_queued(job.dispatched_at),
            time_to_start_seconds=since_queued(job.started_at),
            predict_seconds=job.predict_seconds,
            output_copy_seconds=job.output_copy_seconds,
            total_seconds=since_queued(job.finished_at),
        )


USD_DIGITS = 9  # nano-dollars: a job's AWS cost is tens of micro-dollars


class ProviderCost(BaseModel):
    """What the provider charges for the current attempt's prediction, from the model's catalog price."""

    usd: float | None = Field(
        description="The charge; null until the attempt ended (or if its predict time is unknown)"
    )
    model: str
    basis: str = Field(description="How it is computed, e.g. `1 output(s) x $0.003 per output`")
    price_as_of: str = Field(description="Date of the model's price in the catalog")
    source: str = Field(description="Where the price is published")


class AwsCost(BaseModel):
    """This service's own AWS cost for the job, every attempt: its counted operations at list prices."""

    usd: float
    parts: dict[str, float] = Field(
        description="USD per service: step_functions, lambda, api_gateway, dynamodb, sqs, s3"
    )
    counted: Usage = Field(description="The operations counted (see the README: what is and is not counted)")
    prices_as_of: str = Field(description="Date of the price table (us-east-1, arm64, list prices)")


class JobCost(BaseModel):
    currency: str = "USD"
    provider: ProviderCost | None = Field(description="null: mock generation, nothing charged")
    aws: AwsCost
    total_usd: float | None = Field(description="provider + aws; null while the provider's charge is unknown")

    @classmethod
    def of(cls, job: Job) -> JobCost:
        from shared.catalog import MODELS

        parts = {name: round(usd, USD_DIGITS) for name, usd in job.usage.parts_usd().items()}
        aws = AwsCost(
            usd=round(sum(parts.values()), USD_DIGITS),
            parts=parts,
            counted=job.usage.rounded(),
            prices_as_of=usage_prices()["as_of"],
        )
        provider = None
        model = MODELS.get(job.model or "")
        if model:
            outputs, seconds = len(job.outputs), job.predict_seconds
            charge = model.price.charge(seconds, outputs) if job.status.terminal else None
            provider = ProviderCost(
                usd=None if charge is None else round(charge, USD_DIGITS),
                model=model.name,
                basis=model.price.basis(seconds, outputs),
                price_as_of=model.price.as_of,
                source=model.price.source,
            )
        total = None if provider and provider.usd is None else aws.usd + (provider.usd if provider else 0)
        return cls(provider=provider, aws=aws, total_usd=None if total is None else round(total, USD_DIGITS))


class JobDetail(JobStatusView):
    request: GenerateRequest
    model: str | None = Field(description="The model that runs the job; null for mock generation")
    adjustments: list[Adjustment] = Field(
        description="Parameters of a request without `model` adapted to the default model (dropped or clamped)"
    )
    prediction_id: str | None = Field(description="The current attempt's prediction on Replicate")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    attempts: list[Attempt]
    outputs: list[OutputView]
    metrics: JobMetrics
    cost: JobCost
    webhook_deliveries: list[deliveries.Delivery] = Field(
        default_factory=list, description="Each event sent to the request's `webhook`: tries, last status, outcome"
    )
    links: Links

    @classmethod
    def of(cls, job: Job, estimate: tuple[int, float, float | None] | None = None) -> JobDetail:  # type: ignore[override]
        outputs = []
        for index, output in enumerate(job.outputs):
            url, expires_at = output_files.download_url(output.key)
            outputs.append(
                OutputView(
                    index=index,
                    url=url,
                    expires_at=expires_at,
                    content_type=output.content_type,
                    width=output.width,
                    height=output.height,
                    size_bytes=output.size_bytes,
                )
            )
        return cls(
            **JobStatusView.of(job, estimate).model_dump(),
            request=job.request,
            model=job.model,
            adjustments=job.adjustments,
            prediction_id=job.prediction_id,
            started_at=job.started_at,
            finished_at=job.finished_at,
            deadline_at=job.deadline_at,
            attempts=job.attempts,
            outputs=outputs,
            metrics=JobMetrics.of(job),
            cost=JobCost.of(job),
            # One GetItem, only for jobs that asked for webhooks.
            webhook_deliveries=deliveries.of_job(job.job_id) if job.request.webhook else [],
            links=Links.of(job.job_id),
        )


class JobSummary(BaseModel):
    job_id: str
    status: JobStatus
    progress: int
    prompt: str
    attempt: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        return cls(
            job_id=job.job_id,
            status=job.status,
            progress=job.progress,
            prompt=job.request.prompt,
            attempt=job.attempt,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


METRIC_NAMES = ("queue_wait", "time_to_start", "predict", "output_copy", "total")


class MetricsSummary(BaseModel):
    """The `metrics` of the completed jobs, summed and averaged (a timing a job lacks is left out)."""

    jobs: int = Field(description="Completed jobs")
    total_seconds: dict[str, float] = Field(description="Per timing: queue_wait, time_to_start, predict, ...")
    mean_seconds: dict[str, float | None]

    @classmethod
    def of(cls, counters: dict[str, float]) -> MetricsSummary:
        total, mean = {}, {}
        for name in METRIC_NAMES:
            ms, count = counters.get(f"metric_{name}_ms", 0), counters.get(f"metric_{name}_count", 0)
            total[name] = round(ms / 1000, 3)
            mean[name] = round(ms / count / 1000, 3) if count else None
        return cls(jobs=max(0, int(counters[JobStatus.COMPLETED.value])), total_seconds=total, mean_seconds=mean)


class CostAmounts(BaseModel):
    provider: float = Field(description="The provider's charges (completed jobs' predictions)")
    aws: float = Field(description="This service's AWS cost, every attempt")
    total: float
    aws_parts: dict[str, float] = Field(description="USD per service: step_functions, lambda, api_gateway, ...")


class CostSummary(BaseModel):
    """The jobs' `cost`, summed and averaged per job, in USD."""

    jobs: int = Field(description="Jobs counted (those in the table)")
    total_usd: CostAmounts
    mean_usd: CostAmounts | None = Field(description="Per job; null before any")

    @classmethod
    def of(cls, counters: dict[str, float]) -> CostSummary:
        used = Usage(**{name: counters.get(f"usage_{name}", 0) for name in Usage.model_fields})

        def amounts(divisor: int) -> CostAmounts:
            parts = {name: round(usd / divisor, USD_DIGITS) for name, usd in used.parts_usd().items()}
            provider = round(counters.get("provider_nusd", 0) / 1e9 / divisor, USD_DIGITS)
            aws = round(sum(parts.values()), USD_DIGITS)
            return CostAmounts(provider=provider, aws=aws, total=round(provider + aws, USD_DIGITS), aws_parts=parts)

        jobs = max(0, int(counters["submitted"]))
        return cls(jobs=jobs, total_usd=amounts(1), mean_usd=amounts(jobs) if jobs else None)


class Stats(BaseModel):
    total_jobs: int = Field(description="Jobs in the table (a finished job expires JOB_RETENTION_DAYS after it ended)")
    by_status: dict[JobStatus, int]
    success_rate: float | None = Field(description="completed / (completed + failed), null before any finished")
    average_duration_seconds: float | None = Field(description="Mean processing time of completed jobs")
    metrics: MetricsSummary
    cost: CostSummary

    @classmethod
    def of(cls, counters: dict[str, float]) -> Stats:
        by_status = {status: max(0, int(counters[status.value])) for status in JobStatus}
        completed, failed = by_status[JobStatus.COMPLETED], by_status[JobStatus.FAILED]
        return cls(
            total_jobs=max(0, int(counters["submitted"])),
            by_status=by_status,
            success_rate=round(completed / (completed + failed), 4) if completed + failed else None,
            average_duration_seconds=round(counters["duration_ms"] / completed / 1000, 3) if completed else None,
            metrics=MetricsSummary.of(counters),
            cost=CostSummary.of(counters),
        )


class ModelInfo(BaseModel):
    name: str
    version: str | None = Field(description="Replicate model version, for community models")
    parameters: list[str] = Field(description="The `parameters` fields this model accepts")


class ModelList(BaseModel):
    default: str | None = Field(description="What runs a request that names no model (null: mock generation)")
    models: list[ModelInfo]

    @classmethod
    def of(cls, settings) -> ModelList:
        from shared.catalog import MODELS

        always = {"num_outputs", "seed"}
        return cls(
            default=None if settings.mock_mode else settings.default_model,
            models=[
                ModelInfo(name=m.name, version=m.version, parameters=sorted(m.supported | always))
                for m in MODELS.values()
            ],
        )


class WebhookAck(BaseModel):
    outcome: str


class Health(BaseModel):
    status: str = Field(description="`healthy`, or `unhealthy` when a deep check found a part unreachable")
    mode: str = Field(description="`mock` without a Replicate token, `replicate` with one")
    version: str


class DeepHealth(Health):
    checks: dict[str, str] = Field(description="`ok` or `unreachable`, for table, queue, bucket and workflow")


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `parameters.width`")
    location: str = Field(description="body, query, path or header")
    message: str


class ErrorBody(BaseModel):
    """The one error shape of every 4xx and 5xx answer."""

    code: str = Field(description="Stable, machine-readable error code")
    detail: str = Field(description="Human-readable explanation")
    errors: list[FieldError] | None = Field(default=None, description="Each invalid field (422 only)")
    request_id: str | None = None
