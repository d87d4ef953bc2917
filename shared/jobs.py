"""Everything that can happen to a job, in one place. Handlers call these; these call the store,
the queue, the workflow and the generator.

Who does what:
- API: submit, cancel, retry (and reads);
- dispatcher: dispatch (queue message -> one workflow execution per attempt);
- worker (inside the workflow): shared/attempt.py (processing -> completed);
- finalizer (the workflow's Catch, and the rule on executions that ended badly): record_failure.
"""

from __future__ import annotations

import json
import uuid
from functools import cache
from typing import Any, Literal

from shared import queue, safe_url, workflow
from shared.catalog import model_named
from shared.errors import (
    InvalidParameter,
    InvalidTransition,
    QueueUnavailable,
    generation_error_names,
    parse_error_message,
)
from shared.models import GenerateRequest, Job, JobError, JobStatus, utcnow
from shared.observability import MetricUnit, logger, metrics
from shared.settings import get_settings
from shared.store import JobStore


@cache
def store() -> JobStore:
    return JobStore()


# ---- API ---------------------------------------------------------------------------------------
def submit(request: GenerateRequest) -> Job:
    """Store the job, then queue it. Answers only once both are done, so a 202 is never lost."""
    model, provider_input = plan(request)
    check_webhook(request)
    now = utcnow()
    job = Job(
        job_id=str(uuid.uuid4()),
        status=JobStatus.PENDING,
        request=request,
        model=model,
        provider_input=provider_input,
        created_at=now,
        updated_at=now,
    )
    store().create(job)
    logger.append_keys(job_id=job.job_id)
    _enqueue_or_fail(job)
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
    return job


def plan(request: GenerateRequest) -> tuple[str | None, dict[str, Any] | None]:
    """The model a request runs on and its provider input; InvalidParameter (422) if it cannot.

    Without a provider (mock mode) a request that names no model keeps the old service's generic
    parameters; one that names a model is checked against it, as it would be on Replicate.
    """
    settings = get_settings()
    name = request.model or (None if settings.mock_mode else settings.default_model)
    if name is None:
        return None, None
    return name, model_named(name).input_for(request)


def check_webhook(request: GenerateRequest) -> None:
    """InvalidParameter (422) for a webhook URL that may not be called (see shared/safe_url.py)."""
    if request.webhook is None:
        return
    try:
        safe_url.check(request.webhook, allow_private=get_settings().client_webhook_allow_private)
    except safe_url.UnsafeUrl as exc:
        raise InvalidParameter("webhook", str(exc)) from None


def cancel(job_id: str) -> Job:
    try:
        job = store().transition(
            job_id, JobStatus.CANCELLED, change=lambda j: setattr(j, "error", _cancelled_by_client())
        )
    except InvalidTransition as exc:
        raise InvalidTransition(
            f"Only pending or processing jobs can be cancelled; this job is {exc.current_status}",
            exc.current_status,
        ) from exc
    # The worker also stops at its next progress write; stopping the execution saves the rest.
    try:
        workflow.stop(job.job_id, job.attempt, cause="Cancelled by request")
    except Exception:
        logger.exception("Could not stop the workflow; the worker will notice the cancel itself")
    metrics.add_metric(name="JobsCancelled", unit=MetricUnit.Count, value=1)
    return job


def retry(job_id: str) -> Job:
    """Start a new attempt of a failed or cancelled job (same id, attempt + 1)."""

    def new_attempt(job: Job) -> None:
        job.attempt += 1
        job.progress = 0
        job.error = None
        job.outputs = []
        job.started_at = job.finished_at = job.deadline_at = job.expires_at = None
        job.prediction_id = job.prediction_requested_at = job.task_token = job.webhook_nonce = None

    try:
        job = store().transition(job_id, JobStatus.PENDING, change=new_attempt)
    except InvalidTransition as exc:
        raise InvalidTransition(
            f"Only failed or cancelled jobs can be retried; this job is {exc.current_status}",
            exc.current_status,
        ) from exc
    _enqueue_or_fail(job)
    metrics.add_metric(name="JobsRetried", unit=MetricUnit.Count, value=1)
    return job


def _enqueue_or_fail(job: Job) -> None:
    try:
        queue.enqueue(job.job_id, job.attempt)
    except Exception as exc:
        logger.exception("Could not queue the job")
        record_failure(job.job_id, job.attempt, "QUEUE_UNAVAILABLE", "The job could not be queued")
        raise QueueUnavailable("The job could not be queued and was marked failed; try again later") from exc


def _cancelled_by_client() -> JobError:
    return JobError(code="CANCELLED", message="Cancelled by request")


# ---- dispatcher --------------------------------------------------------------------------------
DispatchOutcome = Literal["started", "duplicate", "skipped"]


def dispatch(message: queue.JobMessage, pacer: workflow.Pacer | None = None) -> DispatchOutcome:
    """Start the workflow of a queued attempt, once, and only if the attempt still waits for it."""
    job = store().get(message.job_id)
    if job.attempt != message.attempt or job.status != JobStatus.PENDING:
        return "skipped"  # cancelled, retried or already running: nothing to start
    if pacer:
        pacer.wait_turn()
    return "started" if workflow.start(job.job_id, job.attempt) else "duplicate"


# ---- finalizer ---------------------------------------------------------------------------------
TIMEOUT_ERRORS = {"States.Timeout", "States.HeartbeatTimeout"}
GENERATION_ERRORS = generation_error_names()
MAX_MESSAGE_LENGTH = 500


def describe_failure(error: str | None, cause: str | None) -> tuple[str, str]:
    """Turn a workflow error (name and cause) into a stable code and a message safe to show.

    Only our own GenerationError messages are passed on; anything else (an unexpected exception,
    a Lambda service error) gets a generic message, so no stack trace or internal name leaks.
    """
    if error in TIMEOUT_ERRORS:
        return "JOB_TIMEOUT", f"The job did not finish within {get_settings().job_timeout} seconds"
    if error in GENERATION_ERRORS:
        try:
            code, message = parse_error_message(json.loads(cause or "{}").get("errorMessage"))
        except (ValueError, AttributeError):
            code, message = None, ""
        if code == "JOB_TIMEOUT":
            return describe_failure("States.Timeout", None)
        if code:
            return code, message[:MAX_MESSAGE_LENGTH]
    if error and error.startswith("Lambda."):
        return "WORKER_UNAVAILABLE", "The worker could not be started; retry the job later"
    return "INTERNAL_ERROR", "The job failed unexpectedly; retry it, and report it if it keeps failing"


def record_failure(job_id: str, attempt: int, code: str, message: str) -> Job | None:
    """End an attempt `failed` with a reason. A no-op if it already ended (or was superseded)."""
    try:
        job = store().transition(
            job_id,
            JobStatus.FAILED,
            attempt=attempt,
            change=lambda j: setattr(j, "error", JobError(code=code, message=message)),
        )
    except InvalidTransition:
        logger.info("Attempt already ended; failure not recorded", extra={"code": code})
        return None
    logger.warning("Job failed", extra={"code": code, "error_message": message})
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    return job
