"""Record why a job failed, and cancel its provider prediction. Two callers:

- the workflow's Catch, with the error of the state that failed: {"job_id", "attempt", "error", "cause"};
- the EventBridge rule on executions that ended TIMED_OUT, FAILED or ABORTED (the whole-job
  deadline, or a failure the workflow could not record itself), with the execution status event.

Both end the attempt `failed` unless it already ended (a cancel, for one), and cancel the
attempt's prediction on the provider if it has one, so nothing keeps running, billed, after its
job ended. A repeat is harmless.
"""

from __future__ import annotations

from pydantic import BaseModel

from shared import jobs, workflow
from shared.attempt import cancel_prediction
from shared.observability import logger, metrics, tracer


class Failure(BaseModel):
    job_id: str
    attempt: int
    error: str | None = None
    cause: str | None = None


def from_execution_event(event: dict) -> tuple[str, int, str, str]:
    detail = event["detail"]
    job_id, attempt = workflow.parse_execution_name(detail["name"])
    if detail["status"] == "ABORTED":
        return job_id, attempt, "EXECUTION_ABORTED", "The job's workflow was stopped"
    error = "States.Timeout" if detail["status"] == "TIMED_OUT" else detail.get("error")
    code, message = jobs.describe_failure(error, detail.get("cause"))
    return job_id, attempt, code, message


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    if event.get("source") == "aws.states":
        job_id, attempt, code, message = from_execution_event(event)
    else:
        failure = Failure.model_validate(event)
        job_id, attempt = failure.job_id, failure.attempt
        code, message = jobs.describe_failure(failure.error, failure.cause)
    logger.append_keys(job_id=job_id, attempt=attempt)
    job = jobs.record_failure(job_id, attempt, code, message)
    current = jobs.store().get(job_id)
    if current.attempt == attempt:
        cancel_prediction(current)
    return {"job_id": job_id, "recorded": job is not None, "error": {"code": code, "message": message}}
