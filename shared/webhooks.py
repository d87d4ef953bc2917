"""The provider's webhooks: who sent them (Standard Webhooks signature) and what they change.

A delivery for the current attempt's prediction raises the job's progress and keeps the
workflow's heartbeat alive; the terminal one resumes the waiting workflow (its Collect state
copies the outputs). Deliveries are idempotent: progress only rises, and a second terminal
delivery finds the workflow no longer waiting.

The API's bundle has no provider client, so the signature check and the secret fetch use the
standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.request
from collections.abc import Mapping

from shared import notify
from shared.errors import JobNotFound, ServiceError
from shared.generation.predictions import PredictionState, job_progress
from shared.jobs import store
from shared.models import WebhookEvent
from shared.observability import logger
from shared.secrets import provider_credentials
from shared.settings import get_settings
from shared.store import JobNotRunning
from shared.workflow import send_task_heartbeat, send_task_success

TOLERANCE_SECONDS = 300  # Standard Webhooks' default
SECRET_CACHE_SECONDS = 3600
DEFAULT_BASE_URL = "https://api.replicate.com"


class WebhookRejected(ServiceError):
    status_code = 401
    code = "INVALID_SIGNATURE"

    def __init__(self, reason: str) -> None:
        super().__init__("Webhook signature verification failed")
        self.reason = reason


def verify(headers: Mapping[str, str], body: str, secret: str, now: float | None = None) -> None:
    """Raise WebhookRejected unless `body` is signed with `secret`, recently. `body` is the raw
    text as received: re-serialized JSON would not match the signature."""
    headers = {k.lower(): v for k, v in headers.items()}
    message_id, timestamp, signatures = (
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
    )
    if not (message_id and timestamp and signatures):
        raise WebhookRejected("unsigned")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRejected("bad timestamp") from None
    if abs((now or time.time()) - sent_at) > TOLERANCE_SECONDS:
        raise WebhookRejected("stale timestamp")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except ValueError:
        raise WebhookRejected("unusable signing secret") from None
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return
    raise WebhookRejected("no matching signature")


_secret_cache: dict[str, tuple[str, float]] = {}


def signing_secret(refresh: bool = False) -> str:
    """The webhook signing secret: configured, or fetched from the provider and cached."""
    credentials = provider_credentials()
    if credentials.webhook_secret:
        return credentials.webhook_secret.get_secret_value()
    if credentials.api_token is None:
        raise WebhookRejected("no provider configured")
    cached = _secret_cache.get("key")
    if cached and not refresh and time.monotonic() - cached[1] < SECRET_CACHE_SECONDS:
        return cached[0]
    base = (get_settings().replicate_base_url or DEFAULT_BASE_URL).rstrip("/")
    request = urllib.request.Request(
        f"{base}/v1/webhooks/default/secret",
        headers={"Authorization": f"Bearer {credentials.api_token.get_secret_value()}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            secret = json.loads(response.read())["key"]
    except Exception as exc:
        logger.warning("Could not fetch the webhook signing secret", extra={"error": type(exc).__name__})
        raise ServiceError("Webhook signing secret unavailable") from None
    _secret_cache["key"] = (secret, time.monotonic())
    return secret


def authenticate(headers: Mapping[str, str], body: str) -> None:
    """Verify a delivery; on a signature mismatch, refetch the secret once (it may have rotated)."""
    try:
        verify(headers, body, signing_secret())
    except WebhookRejected as first:
        if first.reason != "no matching signature" or provider_credentials().webhook_secret:
            raise
        verify(headers, body, signing_secret(refresh=True))


def deliver(job_id: str, attempt: int, nonce: str, payload: dict) -> str:
    """Apply one authenticated delivery to its job. Returns what it did (for logs and tests)."""
    prediction = PredictionState.from_json(payload)
    try:
        job = store().get(job_id)
    except JobNotFound:
        return "unknown job"
    if job.attempt != attempt or not job.webhook_nonce or not hmac.compare_digest(nonce, job.webhook_nonce):
        return "stale attempt"
    if job.status.terminal or not job.task_token:
        return "already ended"
    if job.prediction_id and job.prediction_id != prediction.id:
        return "another prediction"
    try:
        if not job.prediction_id:  # the webhook beat the worker's own write of the id
            store().update_running(job_id, attempt, {"prediction_id": prediction.id})
        if prediction.done:
            resumed = send_task_success(job.task_token, {"status": "ready", "prediction_id": prediction.id})
            return "resumed" if resumed else "duplicate"
        progress = job_progress(prediction.progress)
        if progress is not None:
            store().set_progress(job_id, attempt, min(progress, 89))
            if min(progress, 89) > job.progress:
                notify.job_changed(job, WebhookEvent.PROGRESS, seq=min(progress, 89))
    except JobNotRunning:
        return "already ended"
    send_task_heartbeat(job.task_token)
    return "progress"
