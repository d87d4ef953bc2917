"""Client webhooks, the job side: after a job's write succeeds, queue an event message for the
notifier (functions/notifier) if the job's request asked for that event. Never delays or fails the
job: a failure to queue is logged and the job goes on.

Also what the notifier and the tests share: the message, the stable webhook-id, and which secrets
sign a job's deliveries (shared/signing.py keeps them).
"""

from __future__ import annotations

import hashlib
import time

from pydantic import BaseModel, ConfigDict, SecretStr

from shared import signing
from shared.aws import client
from shared.models import Job, JobStatus, WebhookEvent
from shared.observability import logger
from shared.settings import get_settings

STATUS_EVENTS = {
    JobStatus.PROCESSING: WebhookEvent.PROCESSING,
    JobStatus.COMPLETED: WebhookEvent.COMPLETED,
    JobStatus.FAILED: WebhookEvent.FAILED,
    JobStatus.CANCELLED: WebhookEvent.CANCELLED,
}


class EventMessage(BaseModel):
    """The notifier queue's message: which event of which job; the job is read at delivery."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    attempt: int
    event: WebhookEvent
    seq: int = 0  # numbers progress events (their percent); 0 for the others
    occurred_at: float  # epoch seconds: the body's timestamp and the start of the retry window
    tries: int = 0  # deliveries tried so far
    not_before: float = 0  # a retry further away than SQS's 900 s delay waits in more hops

    @property
    def webhook_id(self) -> str:
        """Stable per event, so a receiver dedupes retries and duplicate queue deliveries by it."""
        digest = hashlib.sha256(f"{self.job_id}_{self.attempt}_{self.event.value}_{self.seq}".encode()).hexdigest()
        return f"msg_{digest[:32]}"


def job_changed(job: Job, event: WebhookEvent | None = None, seq: int = 0) -> None:
    """Queue `event` (default: the one of the job's status) if the job's webhook wants it."""
    event = event or STATUS_EVENTS.get(job.status)
    if not job.request.webhook or event is None or event not in job.request.webhook_events:
        return
    message = EventMessage(job_id=job.job_id, attempt=job.attempt, event=event, seq=seq, occurred_at=time.time())
    try:
        send(message)
    except Exception:
        logger.exception("Could not queue a client webhook event", extra={"event": event.value})


def send(message: EventMessage, delay_seconds: int = 0) -> None:
    client("sqs").send_message(
        QueueUrl=get_settings().client_webhook_queue_url,
        MessageBody=message.model_dump_json(),
        DelaySeconds=delay_seconds,
    )


# ---- signing -----------------------------------------------------------------------------------
def secret_for(job: Job) -> list[SecretStr]:
    """The secrets that sign this job's deliveries, read at each delivery (so a rotation applies
    at once): those of the API key that submitted it, even if revoked since (its accepted jobs
    still report to the receiver that holds its secret); for a job without a key (an operator's
    IAM principal, or API_AUTH=none locally), the deployment's own, as for a key made before keys
    had their own (until `make api-key-rotate-secret` gives it one)."""
    if job.key_id:
        try:
            return signing.current(job.key_id)
        except signing.NoSigningSecret:
            pass
    return signing.deployment()
