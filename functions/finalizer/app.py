"""Record why a job failed, and cancel its provider prediction. Two callers:

- the workflow's Catch, with the error of the state that failed: {"job_id", "attempt", "error", "cause"};
- the EventBridge rule on executions that ended TIMED_OUT, FAILED or ABORTED (the whole-job
  deadline, or a failure the workflow could not record itself), with the execution status event.

Both end the attempt `failed` unless it already ended (a cancel, for one), and cancel the
attempt's prediction on the provider if it has one, so nothing keeps running, billed, after its
job ended. A repeat is harmless.
"""

from __future__ import annotations

from shared import jobs, usage
from shared.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    usage.start(context)
    if event.get("source") == "aws.states":
        failure = jobs.Failure.from_execution_event(event)
    else:
        failure = jobs.Failure.from_catch(event)
    logger.append_keys(job_id=failure.job_id, attempt=failure.attempt)
    return jobs.finalize(failure)
