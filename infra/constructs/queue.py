"""Jobs queue with its dead-letter queue (settings from infra/spec.py QUEUE), and the queue that
keeps execution-status events the finalizer could not take."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import spec


def _queue(scope: Construct, id: str, **props) -> sqs.Queue:
    # SQS-managed encryption is free and works with EventBridge and Lambda as senders.
    return sqs.Queue(scope, id, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True, **props)


def queue_with_dead_letters(scope: Construct, queue: spec.QueueSpec) -> tuple[sqs.Queue, sqs.Queue]:
    """A consumed queue ("Queue") and its dead-letter queue ("DeadLetterQueue"), as `queue` sets them."""
    dead_letter_queue = _queue(scope, "DeadLetterQueue", retention_period=Duration.seconds(queue.dlq_retention_seconds))
    main = _queue(
        scope,
        "Queue",
        # 6x its consumer's timeout (infra/spec.py): a batch is never visible again while in flight.
        visibility_timeout=Duration.seconds(queue.visibility_timeout_seconds),
        retention_period=Duration.seconds(queue.retention_seconds),
        dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=queue.max_receive_count, queue=dead_letter_queue),
    )
    return main, dead_letter_queue


def grant_send(queue: sqs.IQueue, grantee: iam.IGrantable) -> None:
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn])
    )


class JobsQueue(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.queue, self.dead_letter_queue = queue_with_dead_letters(self, spec.QUEUE)
        # Execution-status events (EventBridge target) and async finalizer invocations that failed
        # every retry, and batches of the table's stream the counters function could not apply
        # (their records): kept 14 days, and alarmed on, so nothing fails silently.
        self.failed_events = _queue(self, "FailedEvents", retention_period=Duration.days(14))

    def grant_send(self, grantee: iam.IGrantable) -> None:
        grant_send(self.queue, grantee)
