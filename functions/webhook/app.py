"""The provider's webhooks (Replicate's signed prediction updates) on this function's own URL, a
Lambda function URL: a delivery costs one small Lambda invocation and no API Gateway request.

Public by necessity (Replicate cannot sign with SigV4), so it serves exactly one route, POST
WEBHOOK_PATH with a valid, recent Standard Webhooks signature (shared/webhooks.py), checked before
the body is parsed; every other path or method is a 404 in the API's error shape (the same router,
shared/http_api.py). Its reserved concurrency is its throttle: a flood gets Lambda's 429s and
cannot touch the API's limits or the other functions' concurrency.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared import usage, webhooks
from shared.errors import InvalidParameter, PayloadTooLarge
from shared.http_api import Request, Router
from shared.observability import logger, tracer
from shared.schemas import WEBHOOK_PATH, WebhookAck, WebhookQuery

# A prediction's status is a few KB: anything far past that is refused before it is looked at.
MAX_BODY_BYTES = 64 * 1024

webhook = Router()


@webhook.post(
    WEBHOOK_PATH,
    operation_id="replicateWebhook",
    response=WebhookAck,
    description="Delivery processed (or ignored as stale or duplicate)",
    query=WebhookQuery,
    errors=(401, 413),
)
def replicate_webhook(request: Request) -> WebhookAck:
    """Replicate's prediction webhooks, authenticated by their Standard Webhooks signature."""
    query: WebhookQuery = request.query
    body = request.raw_body
    if len(body.encode()) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is over {MAX_BODY_BYTES} bytes")
    try:
        webhooks.authenticate(request.raw_headers, body)
    except webhooks.WebhookRejected as exc:
        logger.warning("Webhook rejected", extra={"reason": exc.reason})
        raise
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested past the interpreter's limit
        raise InvalidParameter("body", "not a prediction") from None
    if not isinstance(payload, dict) or "id" not in payload:
        raise InvalidParameter("body", "not a prediction")
    outcome = webhooks.deliver(query.job_id, query.attempt, query.nonce, payload)
    # Progress arrives every few seconds per running job: at INFO only what is out of the ordinary.
    level = logging.DEBUG if outcome in webhooks.ROUTINE_OUTCOMES else logging.INFO
    logger.log(level, "Webhook delivered", extra={"job_id": query.job_id, "outcome": outcome})
    return WebhookAck(outcome=outcome)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    usage.start(context)  # a write to the job (or the hand-over to the worker) carries it
    return webhook.resolve(event, context)
