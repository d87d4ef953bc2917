"""Each job's client webhook deliveries: one item per job (`pk` = "deliveries#<job id>"), one
attribute per event (named by its webhook-id), so the job detail reads them with one GetItem and
the job item never grows. The item expires with the job (same TTL attribute)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from shared.aws import client
from shared.job_store import PK, TTL_ATTRIBUTE, JobStore
from shared.models import WebhookEvent, utcnow
from shared.settings import get_settings

PREFIX = "deliveries#"

DeliveryState = Literal["pending", "delivered", "given_up"]


class Delivery(BaseModel):
    webhook_id: str
    event: WebhookEvent
    attempt: int
    attempts: int = 0
    last_status: str | None = None  # the HTTP status, or timeout / connection_error / refused: <why>
    state: DeliveryState = "pending"
    updated_at: datetime


def _key(job_id: str) -> dict:
    return {PK: {"S": f"{PREFIX}{job_id}"}}


def record(job_id: str, delivery: Delivery) -> None:
    store = JobStore()
    expires = int(utcnow().timestamp()) + get_settings().job_retention_days * 86_400
    client("dynamodb").update_item(
        TableName=store.table,
        Key=_key(job_id),
        UpdateExpression="SET #d = :d, #ttl = :ttl",
        ExpressionAttributeNames={"#d": delivery.webhook_id, "#ttl": TTL_ATTRIBUTE},
        ExpressionAttributeValues=store._marshal({":d": delivery.model_dump(mode="python"), ":ttl": expires}),
    )


def of_job(job_id: str) -> list[Delivery]:
    store = JobStore()
    item = client("dynamodb").get_item(TableName=store.table, Key=_key(job_id), ConsistentRead=True).get("Item", {})
    values = store._unmarshal({k: v for k, v in item.items() if k.startswith("msg_")})
    return sorted((Delivery.model_validate(v) for v in values.values()), key=lambda d: (d.updated_at, d.webhook_id))


def get(job_id: str, webhook_id: str) -> Delivery | None:
    return next((d for d in of_job(job_id) if d.webhook_id == webhook_id), None)
