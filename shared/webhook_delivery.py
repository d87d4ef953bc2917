"""Client webhooks, the delivery side (the notifier function): sign the job's detail (with the
secrets shared/notify.py secret_for picks), POST it to the checked address, and retry on timeouts,
connection errors, 429 and 5xx by sending the event back to the queue with a growing delay, until
the retry window has passed. Every try is recorded in the job's delivery log (shared/deliveries.py).
"""

from __future__ import annotations

import json
import math
import random
import time
from datetime import UTC, datetime
from typing import Literal

from shared import deliveries, notify, safe_url, signing
from shared.errors import JobNotFound
from shared.job_store import store
from shared.models import Job, utcnow
from shared.notify import EventMessage
from shared.observability import logger
from shared.schemas import JobDetail
from shared.settings import get_settings

MAX_RESPONSE_BYTES = 64 * 1024  # we only need the status; never read an unbounded body
MAX_SQS_DELAY_SECONDS = 900
USER_AGENT = "media-generation-webhooks/1"

Outcome = Literal["delivered", "retrying", "given_up", "skipped"]


def body_of(message: EventMessage, job: Job) -> str:
    """Standard Webhooks' envelope around the job as GET /api/v1/jobs/{id} shows it."""
    detail = JobDetail.of(job).model_dump(mode="json")
    timestamp = datetime.fromtimestamp(message.occurred_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps({"type": message.event.value, "timestamp": timestamp, "data": detail}, separators=(",", ":"))


def post(target: safe_url.Target, headers: dict[str, str], body: str) -> str:
    """One POST to the checked address (the name stays in Host, SNI and the certificate check).
    Returns the status code as text, or timeout / connection_error."""
    import httpx  # the notifier's package has it (http group); the API's, which imports shared/, not

    url, host_header, extensions = safe_url.pinned(target)
    timeout = get_settings().client_webhook_timeout_seconds
    request_headers = headers | host_header | {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as http:
            request = http.build_request(
                "POST", url, content=body.encode(), headers=request_headers, extensions=extensions
            )
            response = http.send(request, stream=True)
            try:
                read = 0
                for chunk in response.iter_raw():  # bounded: stop once enough is read
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
            finally:
                response.close()
            return str(response.status_code)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.TransportError:
        return "connection_error"


def retryable(status: str) -> bool:
    return status in ("timeout", "connection_error", "429") or status.startswith("5")


def retry_delay(tries: int) -> float:
    """First after CLIENT_WEBHOOK_RETRY_SECONDS, doubling, with up to a quarter more as jitter."""
    base = get_settings().client_webhook_retry_seconds * 2 ** (tries - 1)
    return base * random.uniform(1.0, 1.25)


def deliver(message: EventMessage) -> Outcome:
    """Try one delivery of an event; schedule the next try or record the end."""
    webhook_id = message.webhook_id
    previous = deliveries.get(message.job_id, webhook_id)
    if previous and previous.state != "pending":
        return "skipped"  # a duplicate queue delivery of an event that already ended
    now = time.time()
    if message.not_before > now:  # still waiting out a delay longer than SQS allows
        notify.send(message, delay_seconds=min(MAX_SQS_DELAY_SECONDS, math.ceil(message.not_before - now)))
        return "retrying"
    try:
        job = store().get(message.job_id)
    except JobNotFound:
        return "skipped"
    settings = get_settings()
    tries = message.tries + 1
    try:
        target = safe_url.check(job.request.webhook or "", allow_private=settings.client_webhook_allow_private)
    except safe_url.UnsafeUrl as exc:
        status = f"refused: {exc}"
    else:
        body = body_of(message, job)
        timestamp = int(now)
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature(notify.secret_for(job), webhook_id, timestamp, body),
        }
        status = post(target, headers, body)
    delivery = deliveries.Delivery(
        webhook_id=webhook_id,
        event=message.event,
        attempt=message.attempt,
        attempts=tries,
        last_status=status,
        updated_at=utcnow(),
    )
    log = {"job_id": message.job_id, "event": message.event.value, "tries": tries, "status": status}
    if status.startswith("2"):
        outcome: Outcome = "delivered"
    elif retryable(status) and now + (delay := retry_delay(tries)) <= (
        message.occurred_at + settings.client_webhook_retry_window_seconds
    ):
        outcome = "retrying"
        later = message.model_copy(update={"tries": tries, "not_before": now + delay})
        notify.send(later, delay_seconds=min(MAX_SQS_DELAY_SECONDS, math.ceil(delay)))
    else:
        outcome = "given_up"  # a 4xx other than 429, a redirect, a refused URL, or the window passed
    delivery.state = "pending" if outcome == "retrying" else outcome
    deliveries.record(message.job_id, delivery)
    logger.info("Client webhook", extra=log | {"outcome": outcome})
    return outcome
