"""SQS -> Step Functions: start one workflow execution per queued job attempt, no faster than
DISPATCH_RATE_PER_SECOND (see shared.workflow.Pacer).

Partial batch failures: only the records that failed return to the queue (and, after the queue's
maxReceiveCount, to the dead-letter queue). On a record's last delivery the job is marked failed
first, so the job never stays pending behind a message nobody will process.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import jobs, usage, workflow
from shared.errors import JobNotFound
from shared.observability import logger, metrics, tracer
from shared.queue import JobMessage
from shared.settings import get_settings

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_pacer: workflow.Pacer | None = None


def pacer() -> workflow.Pacer:
    """One per warm container: the pace carries over from batch to batch."""
    global _pacer
    _pacer = _pacer or workflow.Pacer.from_settings()
    return _pacer


def dispatch_record(record: SQSRecord) -> str:
    logger.remove_keys(["job_id", "attempt"])  # the batch's previous record's, until this one's are known
    message = JobMessage.model_validate_json(record.body)
    logger.append_keys(job_id=message.job_id, attempt=message.attempt)
    try:
        outcome = jobs.dispatch(message, pacer())
    except Exception as exc:
        last_delivery = int(record.attributes.approximate_receive_count) >= get_settings().queue_max_receive_count
        if last_delivery and not isinstance(exc, JobNotFound):
            jobs.record_failure(
                message.job_id, message.attempt, "DISPATCH_FAILED", "The job's workflow could not be started"
            )
        raise
    logger.info("Dispatched", extra={"outcome": outcome})
    return outcome


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    usage.start(context)
    return process_partial_response(event=event, record_handler=dispatch_record, processor=processor, context=context)
