"""Idempotency-Key on submits: the same key from the same caller replays the first answer.

Powertools' idempotency utility, persisted in the jobs table under `idempotency#<hash>` keys
(GetItem/PutItem/UpdateItem/DeleteItem on one item, never a scan; the table's TTL drops them).
The record key hashes the caller with the client's key, so two callers never share a record; the
operation and its input are the payload checked on replay, so a key reused for something else is
refused instead of answering with another request's job.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from shared import job_store
from shared.errors import IdempotencyInProgress, IdempotencyKeyReused

HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 255
RETENTION_SECONDS = 24 * 3600
KEY_PREFIX = "idempotency"
ANONYMOUS = "anonymous"  # every caller, until API keys exist


@cache
def _config():
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(
        event_key_jmespath="[caller, key]",
        payload_validation_jmespath="request",
        expires_after_seconds=RETENTION_SECONDS,
    )


@cache
def _persistence():
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from shared.aws import client
    from shared.settings import get_settings

    # Attribute names kept apart from a job's: `status` would put records into the by-status index.
    return DynamoDBPersistenceLayer(
        table_name=get_settings().jobs_table_name,
        key_attr=job_store.PK,
        expiry_attr=job_store.TTL_ATTRIBUTE,
        status_attr="idempotency_status",
        data_attr="idempotency_response",
        validation_key_attr="idempotency_validation",
        in_progress_expiry_attr="idempotency_in_progress_expires_at",
        boto3_client=client("dynamodb"),
    )


def once(
    key: str | None,
    operation: str,
    request: dict[str, Any],
    run: Callable[[], dict[str, Any]],
    caller: str = ANONYMOUS,
    lambda_context: Any = None,
) -> dict[str, Any]:
    """`run()` (a JSON-serializable answer) at most once per (caller, key); without a key, always
    (and Powertools' idempotency utility is not even imported). With the Lambda context, an
    in-flight record expires with the invocation, so a crashed one does not block the key 24 h."""
    if key is None:
        return run()
    if hasattr(lambda_context, "get_remaining_time_in_millis"):
        _config().register_lambda_context(lambda_context)
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    @idempotent_function(
        data_keyword_argument="call", persistence_store=_persistence(), config=_config(), key_prefix=KEY_PREFIX
    )
    def guarded(call: dict[str, Any]) -> dict[str, Any]:
        return run()

    try:
        return guarded(call={"caller": caller, "key": key, "request": {"operation": operation, "input": request}})
    except IdempotencyValidationError:
        raise IdempotencyKeyReused() from None
    except IdempotencyAlreadyInProgressError:
        raise IdempotencyInProgress() from None
