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
from typing import Any, Literal

from pydantic import BaseModel

from shared import queue, safe_url, workflow
from shared.auth import Caller
from shared.catalog import model_named
from shared.errors import (
    AttemptLimitReached,
    InvalidParameter,
    InvalidTransition,
    QueueUnavailable,
    generation_error_names,
    parse_error_message,
)
from shared.job_store import store
from shared.models import Adjustment, GenerateRequest, Job, JobError, JobStatus, utcnow
from shared.observability import MetricUnit, logger, metrics
from shared.settings import get_settings
from shared.usage import meter

ANONYMOUS = Caller(owner="anonymous")


# ---- API ---------------------------------------------------------------------------------------
def submit(request: GenerateRequest, caller: Caller = ANONYMOUS) -> Job:
    """Store the job (within the caller's quota), then queue it. Answers only once both are
    done, so a 202 is never lost."""
    model, provider_input, adjustments = plan(request)
    check_webhook(request)
    now = utcnow()
    job = Job(
        job_id=str(uuid.uuid4()),
        status=JobStatus.PENDING,
        owner=caller.owner,
        key_id=caller.key_id,
        request=request,
        model=model,
        provider_input=provider_input,
        adjustments=adjustments,
        created_at=now,
        updated_at=now,
        queued_at=now,
    )
    meter().add(sqs_requests=1)  # its queue message, sent once the job is stored
    store().create(job, max_active=caller.max_active_jobs, max_per_minute=caller.max_submits_per_minute)
    logger.append_keys(job_id=job.job_id)
    # Its place in dispatch order, taken once it is admitted: a refused submit stores nothing.
    job.queue_seq = store().next_queue_seq()
    store().set_queue_seq(job)
    _enqueue_or_fail(job)
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
    return job


def plan(request: GenerateRequest) -> tuple[str | None, dict[str, Any] | None, list[Adjustment]]:
    """The model a request runs on, its provider input and what was adapted; InvalidParameter
    (422) if it cannot run.

    Without a provider (mock mode) a request that names no model keeps the old service's generic
    parameters. With one, such a request runs on DEFAULT_MODEL, adapted to it (the old service had
    no model field, and its own example must keep running); a request that names a model is
    checked strictly against it.
    """
    settings = get_settings()
    if request.model:
        return request.model, model_named(request.model).input_for(request), []
    if settings.mock_mode:
        return None, None, []
    model = model_named(settings.default_model)
    adapted, adjustments = model.adapt(request)
    return model.name, model.input_for(adapted), adjustments


def check_webhook(request: GenerateRequest) -> None:
    """InvalidParameter (422) for a webhook URL that may not be called (see shared/safe_url.py)."""
    if request.webhook is None:
        return
    try:
        safe_url.check(request.webhook, allow_private=get_settings().client_webhook_allow_private)
    except safe_url.UnsafeUrl as exc:
        raise InvalidParameter("webhook", str(exc)) from None


def cancel(job_id: str, owner: str | None = None) -> Job:
    try:
        job = store().transition(
            job_id, JobStatus.CANCELLED, change=lambda j: setattr(j, "error", _cancelled_by_client()), owner=owner
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


def retry(job_id: str, caller: Caller | None = None) -> Job:
    """Start a new attempt of a failed or cancelled job (same id, attempt + 1), within the
    caller's active-jobs quota."""

    limit = get_settings().max_attempts_per_job
    seq: list[int] = []  # taken once the retry is known to be allowed: a refused one wastes no number

    def new_attempt(job: Job) -> None:
        if job.attempt >= limit:  # checked on the version being written: no race past the cap
            raise AttemptLimitReached(limit)
        seq[:] = seq or [store().next_queue_seq()]
        job.attempt += 1
        job.progress = 0
        job.error = None
        job.outputs = []
        job.started_at = job.finished_at = job.deadline_at = job.expires_at = None
        job.prediction_id = job.prediction_requested_at = job.task_token = job.webhook_nonce = None
        job.dispatched_at = job.predict_seconds = job.output_copy_seconds = None
        job.queue_seq, job.queued_at = seq[0], utcnow()

    meter().add(sqs_requests=1)  # its queue message, sent once the retry is stored
    try:
        job = store().transition(
            job_id,
            JobStatus.PENDING,
            change=new_attempt,
            owner=caller.scope if caller else None,
            max_active=caller.max_active_jobs if caller else None,
        )
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
        queue.enqueue(job.job_id, job.attempt, job.queue_seq)
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
        outcome: DispatchOutcome = "skipped"  # cancelled, retried or already running: nothing to start
    else:
        if pacer:
            pacer.wait_turn()
        # The message's receive and delete, the mark below: the job's, carried by the workflow's
        # input to its first write (the dispatcher writes no job).
        meter().add(sqs_requests=2, write_units=1)
        outcome = "started" if workflow.start(job.job_id, job.attempt, meter().take()) else "duplicate"
    if message.seq:  # whatever the outcome, this message has left the queue
        store().mark_dispatched(message.seq)
    return outcome


# ---- queue position ----------------------------------------------------------------------------
def model_key(job: Job) -> str:
    """What a job's duration is averaged under: its model, or the mock generator."""
    return job.model or "mock"


def queue_estimate(job: Job) -> tuple[int, float, float | None] | None:
    """A pending job's place in the queue and estimated seconds until it starts and finishes.

    Estimates, in O(1) reads however long the queue: the jobs ahead are the sequence numbers
    between the highest one dispatched and this job's (SQS delivers roughly, not strictly, in
    order, so this can be off by a few); they leave at DISPATCH_RATE_PER_SECOND, and a job then
    takes its model's recent mean duration. None unless the job waits in the queue.
    """
    if job.status != JobStatus.PENDING or not job.queue_seq:
        return None
    dispatched, mean_seconds = store().queue_state(model_key(job))
    position = max(0, job.queue_seq - dispatched - 1)
    start = (position + 0.5) / get_settings().dispatch_rate_per_second
    if mean_seconds is None and job.model is None:
        mean_seconds = get_settings().mock_generation_seconds
    finish = None if mean_seconds is None else start + mean_seconds
    return position, round(start, 1), None if finish is None else round(finish, 1)


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


class Failure(BaseModel):
    """Why an attempt ended badly, from the workflow's Catch or from an execution status event."""

    job_id: str
    attempt: int
    code: str
    message: str
    # State transitions this failure takes in the workflow (RecordFailure, JobFailed), for the bill.
    transitions: int = 0

    @classmethod
    def from_catch(cls, event: dict) -> Failure:
        """The workflow's RecordFailure input: {"job_id", "attempt", "error", "cause"}."""
        code, message = describe_failure(event.get("error"), event.get("cause"))
        return cls(job_id=event["job_id"], attempt=event["attempt"], code=code, message=message, transitions=2)

    @classmethod
    def from_execution_event(cls, event: dict) -> Failure:
        """EventBridge's "Step Functions Execution Status Change" (TIMED_OUT, FAILED, ABORTED)."""
        detail = event["detail"]
        job_id, attempt = workflow.parse_execution_name(detail["name"])
        if detail["status"] == "ABORTED":
            code, message = "EXECUTION_ABORTED", "The job's workflow was stopped"
        else:
            error = "States.Timeout" if detail["status"] == "TIMED_OUT" else detail.get("error")
            code, message = describe_failure(error, detail.get("cause"))
        return cls(job_id=job_id, attempt=attempt, code=code, message=message)


def finalize(failure: Failure) -> dict[str, Any]:
    """End the attempt `failed` unless it already ended (a cancel, say), and cancel its provider
    prediction, so nothing keeps running, billed, after its job ended. A repeat is harmless."""
    from shared.attempt import cancel_prediction  # the provider client: only on this path

    meter().add(transitions=failure.transitions)
    job = record_failure(failure.job_id, failure.attempt, failure.code, failure.message)
    # That attempt's prediction, even if a retry already started the next one (its own is kept).
    cancel_prediction(store().get(failure.job_id).prediction_of(failure.attempt))
    error = {"code": failure.code, "message": failure.message}
    return {"job_id": failure.job_id, "recorded": job is not None, "error": error}
