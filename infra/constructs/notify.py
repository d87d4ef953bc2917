"""Client webhooks: the event queue the notifier consumes (with its dead-letter queue, settings
from infra/spec.py NOTIFY_QUEUE).

The signing secrets live in the jobs table (shared/signing.py; the notifier's access to them is
JobsStore.grant_signing_secrets), not in Secrets Manager: no idle cost, and one secret per API key
costs nothing either.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import spec
from infra.constructs.queue import grant_send, queue_with_dead_letters


class ClientWebhooks(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.queue, self.dead_letter_queue = queue_with_dead_letters(self, spec.NOTIFY_QUEUE)

    def grant_send(self, grantee: iam.IGrantable) -> None:
        grant_send(self.queue, grantee)
