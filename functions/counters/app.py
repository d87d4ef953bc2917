"""The jobs table's stream: keeps the stats counters (shared/counters.py). Raises on failure, so
Lambda retries the batch (its transaction is idempotent)."""

from __future__ import annotations

from shared import counters
from shared.observability import logger, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    return counters.apply(event.get("Records") or [])
