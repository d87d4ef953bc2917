"""The provider's webhooks (Replicate's signed prediction updates) on this function's own URL, a
Lambda function URL: a delivery costs one small Lambda invocation and no API Gateway request.

Public by necessity (Replicate cannot sign with SigV4), so it serves exactly one thing: POST
WEBHOOK_PATH with a valid, recent Standard Webhooks signature (shared/webhooks.py), checked before
the body is parsed; every other path or method is a 404. Its reserved concurrency is its throttle:
a flood gets Lambda's 429s and cannot touch the API's limits or the other functions' concurrency.
Answers use the API's error shape.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from shared import usage, webhooks
from shared.errors import InvalidParameter, PayloadTooLarge, ServiceError
from shared.observability import logger, tracer
from shared.schemas import WEBHOOK_PATH, ErrorBody, FieldError, WebhookAck

# A prediction's status is a few KB: anything far past that is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024
QUERY = ("job_id", "attempt", "nonce")  # what the worker put in the URL it gave the provider
MAX_QUERY_VALUE = 64


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    usage.start(context)  # a write to the job (or the hand-over to the worker) carries it
    method = (event.get("requestContext") or {}).get("http", {}).get("method")
    path = event.get("rawPath")
    if (method, path) != ("POST", WEBHOOK_PATH):
        return _error(event, 404, "NOT_FOUND", f"No route for {method} {path}")
    try:
        body = _body(event)
        job_id, attempt, nonce = _target(event.get("rawQueryString") or "")
        webhooks.authenticate(event.get("headers") or {}, body)
        outcome = webhooks.deliver(job_id, attempt, nonce, _prediction(body))
    except webhooks.WebhookRejected as exc:
        logger.warning("Webhook rejected", extra={"reason": exc.reason})
        return _error(event, exc.status_code, exc.code, exc.message)
    except InvalidParameter as exc:
        errors = [FieldError(field=exc.field, location=exc.location, message=exc.reason)]
        return _error(event, exc.status_code, exc.code, exc.message, errors)
    except ServiceError as exc:
        return _error(event, exc.status_code, exc.code, exc.message)
    except Exception:
        logger.exception("Unhandled error")
        return _error(event, 500, "INTERNAL_ERROR", "Something went wrong on our side; try again")
    # Progress arrives every few seconds per running job: at INFO only what is out of the ordinary.
    level = logging.DEBUG if outcome in webhooks.ROUTINE_OUTCOMES else logging.INFO
    logger.log(level, "Webhook delivered", extra={"job_id": job_id, "outcome": outcome})
    return _reply(200, WebhookAck(outcome=outcome).model_dump_json())


def _body(event: dict[str, Any]) -> str:
    """The raw body as sent (the signature covers exactly these bytes)."""
    raw = event.get("body") or ""
    try:
        data = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode()
        if len(data) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"The body is {len(data)} bytes; at most {MAX_BODY_BYTES} are accepted")
        return data.decode()
    except (binascii.Error, UnicodeError):
        raise InvalidParameter("body", "not UTF-8 text") from None


def _target(query: str) -> tuple[str, int, str]:
    """The job, attempt and nonce the delivery is for: exactly the query the worker made."""
    values: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in QUERY:
            raise InvalidParameter(name, "Unknown query parameter", location="query")
        if name in values:
            raise InvalidParameter(name, "Given more than once", location="query")
        values[name] = value
    for name in QUERY:
        if not 1 <= len(values.get(name, "")) <= MAX_QUERY_VALUE:
            raise InvalidParameter(name, f"Required, 1 to {MAX_QUERY_VALUE} characters", location="query")
    attempt = values["attempt"]
    if not (attempt.isascii() and attempt.isdigit() and int(attempt) >= 1):
        raise InvalidParameter("attempt", "A whole number from 1", location="query")
    return values["job_id"], int(attempt), values["nonce"]


def _prediction(body: str) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidParameter("body", "not a prediction") from None
    if not isinstance(payload, dict) or "id" not in payload:
        raise InvalidParameter("body", "not a prediction")
    return payload


def _error(
    event: dict[str, Any], status: int, code: str, detail: str, errors: list[FieldError] | None = None
) -> dict[str, Any]:
    request_id = (event.get("requestContext") or {}).get("requestId")
    body = ErrorBody(code=code, detail=detail, errors=errors, request_id=request_id)
    return _reply(status, body.model_dump_json(exclude_none=True))


def _reply(status: int, body: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": body}
