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


def enqueue(job_id: str, attempt: int) -> None:
    client("sqs").send_message(
        QueueUrl=get_settings().jobs_queue_url,
        MessageBody=JobMessage(job_id=job_id, attempt=attempt).model_dump_json(),
    )
