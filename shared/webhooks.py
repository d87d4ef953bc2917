"""The provider's webhooks: who sent them (Standard Webhooks signature) and what they change.

A delivery for the current attempt's prediction raises the job's progress and keeps the
workflow's heartbeat alive; the terminal one hands the attempt to the worker (an asynchronous
invoke), which copies the outputs, completes the job and ends the waiting Generate state, so the
execution ends there. Deliveries are idempotent: progress only rises, and a terminal delivery
for a job that already ended changes nothing (one that arrives while the worker still copies
hands it over again: the copy is repeated and the second completion refused).

The API's bundle has no provider client, so the signature check and the secret fetch use the
standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping

from shared import notify
from shared.errors import JobNotFound, ServiceError
from shared.generation.predictions import MalformedPrediction, PredictionState, job_progress
from shared.job_store import JobNotRunning, store
from shared.models import Job, WebhookEvent, to_iso, utcnow
from shared.observability import logger
from shared.secrets import provider_credentials
from shared.settings import get_settings
from shared.usage import meter
from shared.workflow import hand_to_worker, send_task_heartbeat

TOLERANCE_SECONDS = 300  # Standard Webhooks' default
SECRET_REFRESH_SECONDS = 300  # as long as the stored secret's cache (shared/secrets.py)
DEFAULT_BASE_URL = "https://api.replicate.com"
PROGRESS_STEP = 10
# What most deliveries do: logged at DEBUG only (one line per delivery would be most of the logs).
ROUTINE_OUTCOMES = frozenset({"progress", "finishing"})


class WebhookRejected(ServiceError):
    status_code = 401
    code = "INVALID_SIGNATURE"

    def __init__(self, reason: str) -> None:
        super().__init__("Webhook signature verification failed")
        self.reason = reason


def verify(headers: Mapping[str, str], body: str, secret: str | Callable[[], str], now: float | None = None) -> None:
    """Raise WebhookRejected unless `body` is signed with `secret`, recently. `body` is the raw
    text as received: re-serialized JSON would not match the signature. `secret` may be a callable,
    called only once the headers pass the free checks (an unsigned or stale delivery costs nothing)."""
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
        key = base64.b64decode((secret() if callable(secret) else secret).removeprefix("whsec_"))
    except ValueError:
        raise WebhookRejected("unusable signing secret") from None
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return
    raise WebhookRejected("no matching signature")


class _FetchedSecret:
    """The signing secret fetched from the provider, for deployments that do not store it.

    Fetched at most once per SECRET_REFRESH_SECONDS per container, whatever arrives: a mismatch
    may mean a rotation, but forged deliveries also mismatch, and each one must not cost a call
    to the provider with our token. A failed fetch is remembered for as long (negative cache).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.forget()

    def forget(self) -> None:
        self._value: str | None = None
        self._fetched_at: float | None = None
        self._account: str | None = None

    def get(self, token: str, refresh: bool = False) -> str:
        # Another token or endpoint is another account: its secret is not the one cached.
        account = hashlib.sha256(f"{_base_url()} {token}".encode()).hexdigest()
        with self._lock:
            if account != self._account:
                self.forget()
                self._account = account
            never = self._fetched_at is None
            expired = never or time.monotonic() - self._fetched_at >= SECRET_REFRESH_SECONDS
            if never or (expired and (refresh or self._value is None)):
                self._fetched_at = time.monotonic()
                self._value = _fetch_secret(token) or self._value
            if self._value is None:
                raise WebhookRejected("signing secret unavailable")
            return self._value


def _base_url() -> str:
    return (get_settings().replicate_base_url or DEFAULT_BASE_URL).rstrip("/")


def _fetch_secret(token: str) -> str | None:
    import urllib.request  # rarely needed (REPLICATE_WEBHOOK_SECRET unset): not at every cold start

    request = urllib.request.Request(
        f"{_base_url()}/v1/webhooks/default/secret", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            secret = json.loads(response.read())["key"]
        if not isinstance(secret, str) or not secret:
            raise ValueError("no key")
        return secret
    except Exception as exc:
        logger.warning("Could not fetch the webhook signing secret", extra={"error": type(exc).__name__})
        return None


_fetched = _FetchedSecret()


def forget_signing_secret() -> None:
    """Drop the fetched secret (a cold start, for tests)."""
    _fetched.forget()


def authenticate(headers: Mapping[str, str], body: str) -> None:
    """Verify a delivery. With a stored secret (recommended) nothing is ever fetched; otherwise a
    mismatch may refresh the fetched secret, once per SECRET_REFRESH_SECONDS at most."""
    credentials = provider_credentials()
    if credentials.webhook_secret:
        verify(headers, body, credentials.webhook_secret.get_secret_value())
        return
    if credentials.api_token is None:
        raise WebhookRejected("no provider configured")
    token = credentials.api_token.get_secret_value()
    try:
        verify(headers, body, lambda: _fetched.get(token))
    except WebhookRejected as first:
        if first.reason != "no matching signature":
            raise
        verify(headers, body, lambda: _fetched.get(token, refresh=True))


def deliver(job_id: str, attempt: int, nonce: str, payload: dict) -> str:
    """Apply one authenticated delivery to its job. Returns what it did (for logs and tests)."""
    try:
        prediction = PredictionState.from_json(payload)
    except MalformedPrediction as exc:
        # Signed, so not an attack, but nothing we can act on: acknowledged (a retry would not
        # fix it) and left to the workflow's polling.
        logger.warning("Webhook ignored: malformed prediction", extra={"field": exc.field})
        return "ignored: malformed prediction"
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
            store().update_running(job, {"prediction_id": prediction.id})
        if prediction.done:
            _hand_over(job, payload)
            return "finishing"
        progress = job_progress(prediction.progress)
        # Coalesced: a write only once progress rose PROGRESS_STEP points (each is a paid write).
        if progress is not None and min(progress, 89) >= job.progress + PROGRESS_STEP:
            store().set_progress(job, min(progress, 89))
            if min(progress, 89) > job.progress:
                notify.job_changed(job, WebhookEvent.PROGRESS, seq=min(progress, 89))
    except JobNotRunning:
        return "already ended"
    send_task_heartbeat(job.task_token)
    return "progress"


def _hand_over(job: Job, prediction: dict) -> None:
    """The prediction ended: the worker finishes the attempt (copy, complete, end the Generate
    state), as the Collect state would, without a state transition of its own. It gets the signed
    delivery's prediction, so it need not ask the provider again. If this fails, the heartbeat
    lapses and Collect polls and finishes instead."""
    try:
        hand_to_worker(
            {
                "action": "finish",
                "job_id": job.job_id,
                "attempt": job.attempt,
                "execution_started_at": to_iso(job.dispatched_at or job.started_at or utcnow()),
                "job_timeout_seconds": get_settings().job_timeout,
                "task_token": job.task_token,
                "prediction": prediction,
                "carried": meter().take().rounded().model_dump(),  # this delivery's share of the bill
            }
        )
    except Exception as exc:
        logger.warning("Could not hand the attempt to the worker; Collect will", extra={"error": type(exc).__name__})
