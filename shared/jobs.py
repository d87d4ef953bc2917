"""Everything that can happen to a job, in one place. Handlers call these; these call the store,
the queue, the workflow and the generator.

Who does what:
- API: submit, cancel, retry (and reads);
- dispatcher: dispatch (queue message -> one workflow execution per attempt);
- worker (inside the workflow): run_attempt (processing -> completed);
- finalizer (the workflow's Catch, and the rule on executions that ended badly): record_failure.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel

from shared import queue, storage, workflow
from shared.errors import (
    DeadlineExceeded,
    GenerationError,
    InvalidTransition,
    PermanentError,
    QueueUnavailable,
    TransientError,
    parse_error_message,
)
from shared.generation import generator
from shared.models import GenerateRequest, Job, JobError, JobStatus, OutputFile, utcnow
from shared.observability import MetricUnit, logger, metrics
from shared.settings import get_settings
from shared.store import JobNotRunning, JobStore

# Time the worker keeps for itself after generating: uploads and the final write.
WORKER_SAFETY_SECONDS = 5.0
# Progress writes are throttled: at most one per interval (the last one always goes through).
PROGRESS_MIN_INTERVAL = 0.25


@cache
def store() -> JobStore:
    return JobStore()


# ---- API ---------------------------------------------------------------------------------------
def submit(request: GenerateRequest) -> Job:
    """Store the job, then queue it. Answers only once both are done, so a 202 is never lost."""
    now = utcnow()
    job = Job(job_id=str(uuid.uuid4()), status=JobStatus.PENDING, request=request, created_at=now, updated_at=now)
    store().create(job)
    logger.append_keys(job_id=job.job_id)
    _enqueue_or_fail(job)
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
    return job


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
        job.started_at = job.finished_at = job.deadline_at = None
        job.expires_at = None

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


def dispatch(message: queue.JobMessage) -> DispatchOutcome:
    """Start the workflow of a queued attempt, once, and only if the attempt still waits for it."""
    job = store().get(message.job_id)
    if job.attempt != message.attempt or job.status != JobStatus.PENDING:
        return "skipped"  # cancelled, retried or already running: nothing to start
    return "started" if workflow.start(job.job_id, job.attempt) else "duplicate"


# ---- worker ------------------------------------------------------------------------------------
class WorkerTask(BaseModel):
    """The worker's input, as the workflow builds it."""

    job_id: str
    attempt: int
    execution_started_at: datetime
    job_timeout_seconds: int

    @property
    def deadline(self) -> datetime:
        return self.execution_started_at + timedelta(seconds=self.job_timeout_seconds)


def run_attempt(task: WorkerTask, seconds_left: Callable[[], float]) -> dict[str, Any]:
    """Generate the job's images, store them and complete the job.

    Works until the earlier of the job's deadline and the Lambda's own timeout. If the job stops
    being this attempt's (cancelled meanwhile), it stops and says so instead of failing.
    """
    deadline = min(task.deadline.timestamp(), time.time() + seconds_left() - WORKER_SAFETY_SECONDS)
    job = store().get(task.job_id)
    if job.attempt != task.attempt or job.status.terminal:
        logger.info("Attempt is no longer current; nothing to do", extra={"status": job.status})
        return {"status": job.status.value}
    if time.time() >= deadline:
        raise DeadlineExceeded(f"The job did not finish within {task.job_timeout_seconds} seconds")
    try:
        if job.status == JobStatus.PENDING:
            job = store().transition(
                task.job_id, JobStatus.PROCESSING, attempt=task.attempt, change=lambda j: _started(j, task)
            )
        progress = ProgressReporter(task.job_id, task.attempt)
        try:
            images = generator().generate(
                job.request, on_progress=lambda done: progress(int(done * 90)), deadline=deadline
            )
        except DeadlineExceeded:
            raise DeadlineExceeded(f"The job did not finish within {task.job_timeout_seconds} seconds") from None
        outputs = []
        for index, image in enumerate(images):
            key = storage.output_key(task.job_id, task.attempt, index, image.content_type)
            storage.put_output(key, image.data, image.content_type, image.metadata)
            outputs.append(
                OutputFile(
                    key=key,
                    content_type=image.content_type,
                    width=image.width,
                    height=image.height,
                    size_bytes=len(image.data),
                )
            )
            progress(90 + int(10 * (index + 1) / len(images)) - 1)
        job = store().transition(
            task.job_id, JobStatus.COMPLETED, attempt=task.attempt, change=lambda j: _completed(j, outputs)
        )
    except (JobNotRunning, InvalidTransition):
        status = store().get(task.job_id).status
        logger.info("Job stopped running while the worker was busy", extra={"status": status})
        return {"status": status.value}
    metrics.add_metric(name="JobsCompleted", unit=MetricUnit.Count, value=1)
    if job.started_at and job.finished_at:
        duration = (job.finished_at - job.started_at).total_seconds()
        metrics.add_metric(name="JobDuration", unit=MetricUnit.Seconds, value=duration)
    return {"status": job.status.value, "outputs": [o.key for o in outputs]}


def _started(job: Job, task: WorkerTask) -> None:
    job.started_at = utcnow()
    job.deadline_at = task.deadline


def _completed(job: Job, outputs: list[OutputFile]) -> None:
    job.outputs = outputs
    job.progress = 100


class ProgressReporter:
    """Writes a running attempt's progress (0-100), rising only, throttled."""

    def __init__(self, job_id: str, attempt: int) -> None:
        self.job_id, self.attempt = job_id, attempt
        self.last_value, self.last_time = 0, 0.0

    def __call__(self, value: int) -> None:
        value = max(0, min(99, value))
        now = time.monotonic()
        if value <= self.last_value or now - self.last_time < PROGRESS_MIN_INTERVAL and value < 99:
            return
        store().set_progress(self.job_id, self.attempt, value)  # raises JobNotRunning when cancelled
        self.last_value, self.last_time = value, now


# ---- finalizer ---------------------------------------------------------------------------------
TIMEOUT_ERRORS = {"States.Timeout", "States.HeartbeatTimeout"}
GENERATION_ERRORS = {cls.__name__ for cls in (GenerationError, TransientError, PermanentError, DeadlineExceeded)}
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
        if code:
            return code, message[:MAX_MESSAGE_LENGTH]
    if error and error.startswith("Lambda."):
        return "WORKER_UNAVAILABLE", "The worker could not be started; retry the job later"
    return "INTERNAL_ERROR", "The job failed unexpectedly; retry it, and report it if it keeps failing"


def record_failure(job_id: str, attempt: int, code: str, message: str) -> Job | None:
    """End an attempt `failed` with a reason. A no-op if it already ended (or was superseded)."""
    try:
        job = store().transition(
            job_id, JobStatus.FAILED, attempt=attempt, change=lambda j: setattr(j, "error", JobError(code=code, message=message))
        )
    except InvalidTransition:
        logger.info("Attempt already ended; failure not recorded", extra={"code": code})
        return None
    logger.warning("Job failed", extra={"code": code, "error_message": message})
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    return job
