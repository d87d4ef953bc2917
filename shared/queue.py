"""The jobs queue: the API puts a message per job attempt, the dispatcher takes it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared.aws import client
from shared.settings import get_settings


class JobMessage(BaseModel):
    """The body of a queue message. Small on purpose: the job itself lives in the table."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    attempt: int
    # The attempt's submit sequence number: the dispatcher records how far the queue got with it.
    seq: int | None = None


def enqueue(job_id: str, attempt: int, seq: int | None = None) -> None:
    client("sqs").send_message(
        QueueUrl=get_settings().jobs_queue_url,
        MessageBody=JobMessage(job_id=job_id, attempt=attempt, seq=seq).model_dump_json(exclude_none=True),
    )
