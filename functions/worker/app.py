"""The workflow's Generate task: run one attempt of a job (generate, store outputs, complete).

Raises TransientError for what the workflow should retry and other GenerationErrors for what it
should record as the job's failure.
"""

from __future__ import annotations

from shared import jobs
from shared.observability import logger, metrics, tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    task = jobs.WorkerTask.model_validate(event)
    logger.append_keys(job_id=task.job_id, attempt=task.attempt)
    return jobs.run_attempt(task, seconds_left=lambda: context.get_remaining_time_in_millis() / 1000)
