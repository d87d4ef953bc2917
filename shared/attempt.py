"""One attempt of a job, as the workflow runs it (functions/worker).

Two states call the worker, and the provider's webhook a third time:
- Generate (callback pattern, `.waitForTaskToken`): starts the work and ends the state by calling
  back with the task token. When the job can finish here (mock generation, a fast model in sync
  mode, or polling when there is no public webhook URL) the worker completes it and calls back at
  once. With a webhook URL, it creates the prediction and returns: the workflow then waits, with
  no Lambda running and no state transitions, until the provider's signed webhook says the
  prediction ended.
- finish (no state of its own: the webhook invokes the worker asynchronously with the attempt's
  task token): copies the outputs, completes the job and calls back, so the execution ends with
  Generate, one state transition. A failure is handed to the workflow as the Generate state's
  error (retried or recorded as any); if the invoke is lost, the heartbeat lapses and Collect
  takes over.
- Collect (after a heartbeat lapse or the deadline only): makes sure the attempt is finished:
  copies a succeeded prediction's outputs and completes the job, or, if the provider is still
  working (a lost webhook, a long model), raises PredictionRunning so the workflow polls again
  after POLL_INTERVAL_SECONDS.

Both go one way whatever generates: through the generation port (shared/generation), whose
implementation, mock or Replicate, is chosen once from the settings.

Every write is conditional on the job still running this attempt: a cancelled or retried job
stops the worker (JobNotRunning / InvalidTransition) without touching it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from shared import notify, output_files
from shared.errors import (
    DeadlineExceeded,
    GenerationError,
    InvalidTransition,
    PermanentError,
    PredictionRunning,
    TransientError,
)
from shared.generation import GeneratedImage, Run, cancel_quietly, generation
from shared.generation.predictions import MalformedPrediction, PredictionState, job_progress
from shared.job_store import JobNotRunning, store
from shared.models import Job, JobError, JobStatus, OutputFile, WebhookEvent, utcnow
from shared.observability import MetricUnit, logger, metrics
from shared.settings import get_settings
from shared.usage import Usage, meter
from shared.workflow import send_task_failure, send_task_heartbeat, send_task_success

# Time the worker keeps for itself at the end of its Lambda's life: uploads and the final write.
WORKER_SAFETY_SECONDS = 5.0
# A progress write at most this often, counted from the reporter's start: a copy that ends within
# it writes none (the completion sets 100 anyway). Each is a paid write of the whole job item.
PROGRESS_MIN_INTERVAL = 0.5


class AttemptTask(BaseModel):
    """The worker's input, as the workflow builds it."""

    action: Literal["generate", "collect", "finish"] = "generate"
    job_id: str
    attempt: int
    execution_started_at: datetime
    job_timeout_seconds: int
    task_token: str | None = None
    # finish: the ended prediction, as the provider's signed webhook delivered it.
    prediction: dict[str, Any] | None = None
    # What the job's bill owes to invocations that did not write it (shared/usage.py): the
    # dispatcher's (generate: the workflow's input), the webhook's (finish).
    carried: Usage | None = None
    # collect: the Collect state's retries so far (each was a state transition).
    retries: int = 0

    @property
    def deadline(self) -> datetime:
        return self.execution_started_at + timedelta(seconds=self.job_timeout_seconds)


class Attempt:
    def __init__(self, task: AttemptTask, seconds_left: Callable[[], float]) -> None:
        self.task = task
        self.settings = get_settings()
        self.lambda_deadline = time.time() + seconds_left() - WORKER_SAFETY_SECONDS
        self.deadline = task.deadline.timestamp()
        self.generation = generation(self.settings)
        # This try's start already marked that a create is about to be sent (see Run.create_marked).
        self.create_marked = False
        self.prediction_id: str | None = None  # the prediction this worker started or adopted

    # ---- the two states ----------------------------------------------------------------------
    def generate(self) -> dict[str, Any]:
        meter().add(transitions=1)  # this try of Generate: the state's entry or a retry
        job = store().get(self.task.job_id)
        if not self._current(job):
            return self._call_back({"status": job.status.value})
        self._check_deadline()
        try:
            job = self._start(job)
            reporter = ProgressReporter(job, self.task.task_token)
            prediction = self._prediction(job, reporter, inline=True)
            if not prediction.done and self.generation.calls_back:
                return {"status": "waiting", "prediction_id": prediction.id}
            prediction = self._poll(prediction, reporter)
            if not prediction.done:
                # Out of Lambda time, not of job time: no callback, so the heartbeat lapses and
                # the workflow moves on to Collect, which keeps polling.
                return {"status": "running", "prediction_id": prediction.id}
            return self._call_back(self._finish(job, prediction, reporter))
        except (JobNotRunning, InvalidTransition):
            return self._call_back(self._stopped())

    def finish(self) -> dict[str, Any]:
        """The prediction ended (the provider's webhook said so): copy, complete, call back."""
        if self.task.carried:
            meter().carry(self.task.carried)
        job = store().get(self.task.job_id)
        if not self._current(job):
            return self._call_back({"status": job.status.value})
        try:
            try:
                reporter = ProgressReporter(job, self.task.task_token)
                prediction = self._delivered() or self._prediction(job, reporter, inline=False)
                if not prediction.done:  # not what the webhook said: the heartbeat lapses, Collect polls
                    return {"status": "running", "prediction_id": prediction.id}
                result = self._finish(job, prediction, reporter)
            except (JobNotRunning, InvalidTransition):
                result = self._stopped()
        except Exception as exc:
            # The Generate state's error, as if its Lambda had raised it: its Retry and Catch
            # decide (a retry runs Generate again, which finds the prediction done and copies).
            # Only if that cannot be said does this invoke fail, and Lambda try it again.
            if self.task.task_token and send_task_failure(self.task.task_token, *_task_error(exc)):
                logger.info("Finishing failed; handed to the workflow", extra={"error": type(exc).__name__})
                return {"status": "failed", "error": type(exc).__name__}
            raise
        return self._call_back(result)

    def _delivered(self) -> PredictionState | None:
        """The prediction the webhook handed over (already checked to be this attempt's)."""
        try:
            return PredictionState.from_json(self.task.prediction) if self.task.prediction else None
        except MalformedPrediction:
            return None

    def collect(self) -> dict[str, Any]:
        job = store().get(self.task.job_id)
        if not self._current(job):
            return {"status": job.status.value}
        try:
            if job.status == JobStatus.PENDING:  # Generate never got to start it
                job = self._start(job)
            reporter = ProgressReporter(job, None)
            prediction = self._prediction(job, reporter, inline=False)
            if not prediction.done:
                if time.time() >= self.deadline:
                    cancel_quietly(self.generation, prediction.id)
                    self._check_deadline()
                reporter(job_progress(prediction.progress))
                raise PredictionRunning(f"Prediction {prediction.id} is {prediction.status}")
            meter().add(transitions=self.task.retries + 1)  # Collect's entry and its polls
            return self._finish(job, prediction, reporter)
        except (JobNotRunning, InvalidTransition):
            return self._stopped()

    # ---- steps -------------------------------------------------------------------------------
    def _current(self, job: Job) -> bool:
        if job.attempt == self.task.attempt and not job.status.terminal:
            return True
        logger.info("Attempt is no longer current; nothing to do", extra={"status": job.status})
        return False

    def _check_deadline(self) -> None:
        if time.time() >= self.deadline:
            raise self._timed_out()

    def _timed_out(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"The job did not finish within {self.task.job_timeout_seconds} seconds")

    def _start(self, job: Job) -> Job:
        """Mark the job processing (first try) and record this try's callback token."""
        token, nonce = self.task.task_token, job.webhook_nonce or secrets.token_urlsafe(18)
        if job.status == JobStatus.PENDING:
            # The provider's create follows at once: its mark rides on this write instead of its own.
            marks_create = self.generation.remote and not job.prediction_id

            def started(j: Job) -> None:
                j.started_at, j.deadline_at = utcnow(), self.task.deadline
                j.dispatched_at = self.task.execution_started_at
                j.task_token, j.webhook_nonce = token, nonce
                if marks_create:
                    j.prediction_requested_at = j.started_at
                j.queue_seq = None  # its place in the queue: of no use once it left it

            if self.task.carried:  # the dispatcher's share, carried by the workflow's input
                meter().carry(self.task.carried)
            started_job = store().transition(job.job_id, JobStatus.PROCESSING, attempt=job.attempt, change=started)
            self.create_marked = marks_create
            return started_job
        store().update_running(job, {"task_token": token, "webhook_nonce": nonce})
        return job.model_copy(update={"task_token": token, "webhook_nonce": nonce})

    def _prediction(self, job: Job, reporter: ProgressReporter, *, inline: bool) -> PredictionState:
        """The attempt's prediction, started or found (see Generation.start)."""

        def record(fields: dict[str, Any]) -> None:
            self.prediction_id = fields.get("prediction_id", self.prediction_id)  # known before it is stored
            store().update_running(job, fields)

        run = Run(
            until=min(self.deadline, self.lambda_deadline),
            on_progress=reporter,
            record=record,
            inline=inline,
            create_marked=self.create_marked,
        )
        try:
            return self.generation.start(job, run)
        except DeadlineExceeded:  # the generator's own deadline check, said as the job's
            raise self._timed_out() from None

    def _poll(self, prediction: PredictionState, reporter: ProgressReporter) -> PredictionState:
        """Poll until the prediction ends, the job's deadline passes (cancel it, fail the job) or
        this Lambda runs out of time (return it unfinished: Collect takes over)."""
        interval = self.settings.poll_interval_seconds
        while not prediction.done:
            reporter(job_progress(prediction.progress))
            now = time.time()
            if now >= self.deadline:
                cancel_quietly(self.generation, prediction.id)
                self._check_deadline()
            if now + interval >= self.lambda_deadline:
                return prediction
            time.sleep(min(interval, max(0.0, self.deadline - now)))
            prediction = self.generation.poll(prediction.id)
        return prediction

    def _finish(self, job: Job, prediction: PredictionState, reporter: ProgressReporter) -> dict:
        if prediction.status == "succeeded":
            began = time.monotonic()
            images, metadata = self.generation.outputs(job, prediction, reporter)
            return self._complete(
                job, images, reporter, metadata, predict_seconds=prediction.predict_time, copy_started=began
            )
        if prediction.status == "failed":
            # The provider bills the time a failed prediction ran: the job's cost shows it.
            if prediction.predict_time is not None:
                with contextlib.suppress(JobNotRunning):
                    store().update_running(job, {"predict_seconds": prediction.predict_time})
            raise PermanentError(f"The model failed: {_first_line(prediction.error)}", code="GENERATION_FAILED")
        # Canceled or aborted. Past the deadline, that was us (or Cancel-After): a timeout. A
        # cancel by our client otherwise is a job cancel, which already ended the job.
        self._check_deadline()
        error = JobError(code="PROVIDER_CANCELLED", message="The prediction was cancelled on Replicate")

        def cancelled(j: Job) -> None:
            j.error, j.predict_seconds = error, prediction.predict_time

        job = store().transition(job.job_id, JobStatus.CANCELLED, attempt=job.attempt, change=cancelled)
        metrics.add_metric(name="JobsCancelled", unit=MetricUnit.Count, value=1)
        return {"status": job.status.value}

    def _complete(
        self,
        job: Job,
        images: list[GeneratedImage],
        reporter: ProgressReporter,
        metadata: dict[str, str],
        *,
        predict_seconds: float | None,
        copy_started: float | None = None,
    ) -> dict[str, Any]:
        """Store the images and complete the job. `copy_started` (monotonic): when fetching the
        provider's files began, so the copy time covers downloads and uploads."""
        copy_started = copy_started or time.monotonic()
        outputs = []
        meter().add(s3_puts=len(images))
        for index, image in enumerate(images):
            key = output_files.output_key(job.job_id, job.attempt, index, image.content_type)
            output_files.put_output(key, image.data, image.content_type, image.metadata | metadata)
            outputs.append(
                OutputFile(
                    key=key,
                    content_type=image.content_type,
                    width=image.width,
                    height=image.height,
                    size_bytes=len(image.data),
                )
            )
            reporter(95 + int(4 * (index + 1) / len(images)))

        def completed(j: Job) -> None:
            j.outputs, j.progress = outputs, 100
            j.provider_input = None  # a completed job never runs again: its bytes would be paid for nothing
            j.predict_seconds = predict_seconds
            j.output_copy_seconds = round(time.monotonic() - copy_started, 3)

        job = store().transition(job.job_id, JobStatus.COMPLETED, attempt=job.attempt, change=completed)
        metrics.add_metric(name="JobsCompleted", unit=MetricUnit.Count, value=1)
        if job.started_at and job.finished_at:
            duration = (job.finished_at - job.started_at).total_seconds()
            metrics.add_metric(name="JobDuration", unit=MetricUnit.Seconds, value=duration)
        return {"status": job.status.value, "outputs": [o.key for o in outputs]}

    def _stopped(self) -> dict[str, Any]:
        """The job changed under the worker (a conditional write was refused)."""
        job = store().get(self.task.job_id)
        if job.attempt == self.task.attempt and not job.status.terminal:
            raise TransientError("The job changed while the worker was busy; trying again")
        logger.info("Job stopped running while the worker was busy", extra={"status": job.status})
        # This attempt's prediction only, never the job's current one: a retry may have started
        # another. The id this worker started may not have reached the job (the write refused).
        mine = self.prediction_id or job.prediction_of(self.task.attempt)
        if mine:
            cancel_quietly(self.generation, mine)
        return {"status": job.status.value}

    def _call_back(self, result: dict[str, Any]) -> dict[str, Any]:
        """End the Generate state with `result` (it waits for exactly this callback)."""
        if self.task.task_token:
            send_task_success(self.task.task_token, result)
        return result


class ProgressReporter:
    """Writes a running attempt's progress (0-99, rising only, throttled) and keeps the workflow's
    heartbeat alive while it does: progress means the attempt is alive."""

    def __init__(self, job: Job, task_token: str | None) -> None:
        self.job, self.job_id, self.attempt, self.task_token = job, job.job_id, job.attempt, task_token
        self.last_value, self.last_time = job.progress, time.monotonic()
        self.last_beat = self.last_time
        self.beat_every = max(1.0, get_settings().heartbeat_seconds / 3)

    def __call__(self, value: int | None) -> None:
        now = time.monotonic()
        if self.task_token and now - self.last_beat >= self.beat_every:
            try:
                send_task_heartbeat(self.task_token)
            except Exception:  # a missed beat is retried next time; it must not fail the work
                logger.warning("Heartbeat failed")
            self.last_beat = now
        if value is None:
            return
        value = max(0, min(99, value))
        if value <= self.last_value or now - self.last_time < PROGRESS_MIN_INTERVAL:
            return
        store().set_progress(self.job, value)  # raises JobNotRunning when cancelled
        self.last_value, self.last_time = value, now
        notify.job_changed(self.job, WebhookEvent.PROGRESS, seq=value)


def _task_error(exc: Exception) -> tuple[str, str]:
    """(error, cause) of a task that raised `exc`, shaped as Lambda reports a function error, so
    the workflow and the finalizer read it alike (only our own errors' messages are ever shown)."""
    name = type(exc).__name__
    message = str(exc) if isinstance(exc, GenerationError) else "unexpected error"
    return name, json.dumps({"errorType": name, "errorMessage": message})


def _first_line(text: str | None, limit: int = 300) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:limit] if lines else "no details"


def cancel_prediction(prediction_id: str | None) -> None:
    """Cancel an attempt's prediction on the provider, if it has one (the finalizer's clean-up)."""
    if prediction_id:
        cancel_quietly(generation(), prediction_id)
