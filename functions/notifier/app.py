"""SQS -> client webhooks: deliver each job event to its client's URL (shared/webhook_delivery.py).

A record whose delivery could not even be scheduled (the table or the queue failing) is reported
as a batch item failure: SQS delivers it again, and after maxReceiveCount it goes to the DLQ.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import webhook_delivery
from shared.notify import EventMessage
from shared.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver_record(record: SQSRecord) -> str:
    logger.remove_keys(["job_id", "attempt"])  # the batch's previous record's, until this one's are known
    message = EventMessage.model_validate_json(record.body)
    logger.append_keys(job_id=message.job_id, attempt=message.attempt)
    return webhook_delivery.deliver(message)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    return process_partial_response(event=event, record_handler=deliver_record, processor=processor, context=context)
