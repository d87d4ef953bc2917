"""The workflow's Generate and Collect tasks, and the finish the provider's webhook hands over:
run one attempt of a job (see shared/attempt.py).

Raises TransientError for what the workflow should retry, PredictionRunning to be polled again,
and other GenerationErrors for what it should record as the job's failure.
"""

from __future__ import annotations

from shared import usage
from shared.attempt import Attempt, AttemptTask
from shared.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    usage.start(context)
    task = AttemptTask.model_validate(event)
    logger.append_keys(job_id=task.job_id, attempt=task.attempt, action=task.action)
    attempt = Attempt(task, seconds_left=lambda: context.get_remaining_time_in_millis() / 1000)
    return {"generate": attempt.generate, "collect": attempt.collect, "finish": attempt.finish}[task.action]()
