"""What a job costs this service on AWS, counted while it runs, and priced with the table `make
cost` uses (shared/prices.json: us-east-1, arm64, list prices, with their source and date).

Each function invocation that works on a job meters itself (`meter()`): its Lambda request and
GB-seconds, and what it adds to the job's bill (state transitions, DynamoDB write units, API
Gateway, SQS and S3 requests). What it metered is added to the job's `usage` by the job's next
write (shared/job_store.py), so counting costs no write of its own. An invocation that does not
write the job hands its share on: the dispatcher in the workflow's input, the provider webhook in
its hand-over to the worker. Not counted: the client's own reads (status polls, GETs, listings:
an API request and an api invocation each), provider webhook deliveries that change nothing (a
small invocation each), reads, logs, traces and the stats counters' batches (shared by many jobs).
"""

from __future__ import annotations

import json
import math
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PRICES_FILE = Path(__file__).with_name("prices.json")


@cache
def prices() -> dict[str, Any]:
    return json.loads(PRICES_FILE.read_text())


class Usage(BaseModel):
    """Billable operations of one job, summed over its attempts."""

    model_config = ConfigDict(extra="ignore")

    transitions: int = Field(default=0, description="Step Functions state transitions")
    lambda_requests: int = Field(default=0, description="Lambda invocations")
    lambda_gb_seconds: float = Field(default=0, description="Lambda duration x memory")
    api_requests: int = Field(default=0, description="API Gateway requests (the job's submit, cancel, retry)")
    write_units: float = Field(default=0, description="DynamoDB write request units")
    sqs_requests: int = Field(default=0, description="SQS requests (send, receive, delete)")
    s3_puts: int = Field(default=0, description="S3 PUT requests (the outputs)")

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields})

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in Usage.model_fields)

    def rounded(self) -> Usage:
        return self.model_copy(update={"lambda_gb_seconds": round(self.lambda_gb_seconds, 6)})

    def parts_usd(self) -> dict[str, float]:
        """Each AWS service's share, in USD, at the price table's prices."""
        p = prices()
        return {
            "step_functions": self.transitions * p["stepfunctions_standard_transition"],
            "lambda": self.lambda_requests * p["lambda_request"] + self.lambda_gb_seconds * p["lambda_gb_second_arm64"],
            "api_gateway": self.api_requests * p["http_api_request"],
            "dynamodb": self.write_units * p["dynamodb_write_request_unit"],
            "sqs": self.sqs_requests * p["sqs_standard_request"],
            "s3": self.s3_puts * p["s3_put_copy_post_list_request"],
        }


# ---- the meter of the running invocation -------------------------------------------------------
class Meter:
    """One invocation's usage not yet added to its job."""

    def __init__(self, memory_mb: int) -> None:
        self.gb = memory_mb / 1024
        self.started = self.since = time.monotonic()
        self.request_counted = False
        self.pending = Usage()

    def add(self, **counts: float) -> None:
        self.pending = self.pending + Usage(**counts)

    def carry(self, usage: Usage) -> None:
        """Usage another invocation metered for the job and handed on: the next write adds it."""
        self.pending = self.pending + usage

    def give_back(self, usage: Usage) -> None:
        """A write that did not happen: what it would have carried waits for the next one."""
        self.pending = self.pending + usage.model_copy(update={"lambda_requests": 0, "lambda_gb_seconds": 0})
        self.since -= usage.lambda_gb_seconds / self.gb if self.gb else 0
        self.request_counted = self.request_counted and not usage.lambda_requests

    def take(self) -> Usage:
        """Everything since the last take (the invocation's request the first time)."""
        now = time.monotonic()
        taken = self.pending + Usage(
            lambda_requests=0 if self.request_counted else 1, lambda_gb_seconds=(now - self.since) * self.gb
        )
        self.request_counted, self.since, self.pending = True, now, Usage()
        return taken


_current = threading.local()  # one invocation per thread (as one per container on Lambda)


def start(context: Any) -> Meter:
    """Begin metering an invocation (handlers call it first; `context`: Lambda's)."""
    _current.meter = Meter(int(getattr(context, "memory_limit_in_mb", 128) or 128))
    return _current.meter


def meter() -> Meter:
    """The running invocation's meter (a free-standing one outside a handler: tests, scripts)."""
    found = getattr(_current, "meter", None)
    if found is None:
        found = _current.meter = Meter(0)
        found.request_counted = True
    return found


def take() -> Usage:
    return meter().take()


# ---- DynamoDB item sizes (what a write is billed on: 1 write unit per started KB) ---------------
def attribute_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB JSON, by DynamoDB's item-size rules."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        return len(str(data).lstrip("-").replace(".", "").lstrip("0") or "0") // 2 + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) for k, v in data.items())
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in data)
    return sum(len(str(v).encode()) for v in data)  # SS, NS, BS


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int, transactional: bool = False) -> int:
    return max(1, math.ceil(size / 1024)) * (2 if transactional else 1)
