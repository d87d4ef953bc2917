"""Deep health: can this function reach the resources a job needs? One cheap call each, so the
check can run every minute without costing anything noticeable, and its answer names the part
that failed (never its ARN or the AWS error text, which can carry account details)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.aws import client, error_code
from shared.observability import logger
from shared.settings import get_settings

PROBE_KEY = "health#probe"  # never written: a GetItem of a missing key still proves the table answers


def _table() -> Any:
    from shared.job_store import PK

    return client("dynamodb").get_item(TableName=get_settings().jobs_table_name, Key={PK: {"S": PROBE_KEY}})


def _queue() -> Any:
    return client("sqs").get_queue_attributes(QueueUrl=get_settings().jobs_queue_url, AttributeNames=["QueueArn"])


def _bucket() -> Any:
    return client("s3").head_bucket(Bucket=get_settings().outputs_bucket_name)


def _workflow() -> Any:
    return client("stepfunctions").describe_state_machine(stateMachineArn=get_settings().state_machine_arn)


CHECKS = {"table": _table, "queue": _queue, "bucket": _bucket, "workflow": _workflow}


def check() -> dict[str, str]:
    """Each part: "ok" or "unreachable". Run side by side, so the slowest sets the latency."""

    def run(name: str) -> str:
        try:
            CHECKS[name]()
            return "ok"
        except Exception as exc:
            logger.warning("Health check failed", extra={"part": name, "error": error_code(exc) or type(exc).__name__})
            return "unreachable"

    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        return dict(zip(CHECKS, pool.map(run, CHECKS), strict=True))
