"""Replicate, through the official `replicate` client (1.0.7), with every failure mapped onto the
service's error taxonomy: TransientError (the workflow retries) or PermanentError (the job fails).
ReplicateGeneration is the generation port (shared/generation) on it: one prediction per attempt.

Client traps handled here (see docs/provider.md):
- official models must be created through `client.models.predictions.create` for `wait` to work;
- the client never retries POST: a 429 on create reaches us, and we honour its wait ourselves;
- its GET retry sleeps for any numeric Retry-After, uncapped: we cap it;
- a create without `wait` disables httpx's timeouts (timeout=None): we keep ours;
- `status: "aborted"` breaks its parser: we read that prediction as raw JSON;
- outputs are never fetched through the client (it would send our token to the file host).
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache, cached_property
from typing import Any
from urllib.parse import urlencode

from shared.catalog import Model, model_named
from shared.errors import (
    AmbiguousCreate,
    GenerationError,
    InvalidOutput,
    PermanentError,
    RateLimited,
    TransientError,
)
from shared.generation import Outputs, Run, cancel_quietly
from shared.generation.predictions import PredictionState
from shared.models import Job, utcnow
from shared.observability import MetricUnit, logger, metrics
from shared.schemas import WEBHOOK_PATH
from shared.settings import Settings

# Longest the client's own GET retry may sleep, whatever Retry-After says.
MAX_CLIENT_RETRY_SLEEP = 5.0
CLIENT_RETRY_ATTEMPTS = 3
# No "start": logs events (every 500 ms while it runs) carry progress and heartbeats; each event
# is a paid API request, Lambda call and job read.
WEBHOOK_EVENTS = ["logs", "completed"]
CREATE_TRIES = 3  # creates retried in place after a 429, when its wait fits before the deadline
_THROTTLE_WAIT = re.compile(r"resets in ~?(\d+)\s*s")
_last_headers = threading.local()


@cache
def _client(token: str, base_url: str | None, timeout: float) -> Any:
    import httpx
    import replicate
    from replicate.client import RetryTransport

    def remember_headers(response: httpx.Response) -> None:
        _last_headers.value = response.headers

    class Client(replicate.Client):
        def _request(self, method: str, path: str, **kwargs: Any) -> Any:
            # A create without `wait` passes timeout=None, which turns httpx's timeouts off: the
            # call could hang forever. Drop it, so the client's own timeouts apply.
            if "timeout" in kwargs and kwargs["timeout"] is None:
                del kwargs["timeout"]
            return super()._request(method, path, **kwargs)

    client = Client(
        api_token=token,
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=5.0, pool=5.0),
        event_hooks={"response": [remember_headers]},
    )
    transport = client._client._transport  # the client's RetryTransport (GET on 429/503/504)
    transport.max_attempts = CLIENT_RETRY_ATTEMPTS
    transport._calculate_sleep = lambda attempts, headers: min(
        RetryTransport._calculate_sleep(transport, attempts, headers), MAX_CLIENT_RETRY_SLEEP
    )
    return client


class Replicate:
    def __init__(self, token: str, base_url: str | None = None, timeout: float = 30.0) -> None:
        self.client = _client(token, base_url, timeout)

    def create(self, model: Model, input: dict[str, Any], *, webhook: str | None, wait: int) -> PredictionState:
        """Create a prediction (sync mode: it may come back finished). Raises AmbiguousCreate when
        it may or may not exist (timeout, connection lost, 5xx): the caller must look for it."""
        params: dict[str, Any] = {"input": input}
        if wait:
            params["wait"] = wait
        if webhook:
            params |= {"webhook": webhook, "webhook_events_filter": WEBHOOK_EVENTS}
        try:
            if model.version:
                prediction = self.client.predictions.create(version=model.version, **params)
            else:
                prediction = self.client.models.predictions.create(model=model.name, **params)
        except Exception as exc:
            raise self._translate(exc, ambiguous=True) from None
        return self._state(prediction)

    def get(self, prediction_id: str) -> PredictionState:
        try:
            return self._state(self.client.predictions.get(prediction_id))
        except Exception as exc:
            if _is_parse_error(exc):  # e.g. "aborted", which the client's model rejects
                return self._raw(prediction_id)
            raise self._translate(exc) from None

    def cancel(self, prediction_id: str) -> None:
        try:
            self.client.predictions.cancel(prediction_id)
        except Exception as exc:
            if not _is_parse_error(exc):
                raise self._translate(exc) from None

    def find(self, model: Model, input: dict[str, Any], since: datetime) -> list[PredictionState]:
        """Our predictions created since `since` with this prompt and seed (newest first): how an
        ambiguous create is resolved. The seed is drawn per attempt, so the pair is unique.

        Reads the first page as raw JSON: one "aborted" prediction on it would make the client's
        parser reject the whole page."""
        try:
            page = self.client._request("GET", "/v1/predictions").json()
        except Exception as exc:
            raise self._translate(exc) from None
        found: list[PredictionState] = []
        for data in page.get("results", []):
            state = PredictionState.from_json(data)
            created = _parse_time(state.created_at)
            if created and created < since - timedelta(seconds=30):
                break
            same = all(state.input.get(key) == input.get(key) for key in ("prompt", "seed"))
            if same and data.get("model") in (model.name, None):
                found.append(state)
        return found

    # ---- helpers -----------------------------------------------------------------------------
    def _state(self, prediction: Any) -> PredictionState:
        data = prediction.dict() if hasattr(prediction, "dict") else dict(prediction)
        return PredictionState.from_json(data)

    def _raw(self, prediction_id: str) -> PredictionState:
        try:
            response = self.client._request("GET", f"/v1/predictions/{prediction_id}")
        except Exception as exc:
            raise self._translate(exc) from None
        return PredictionState.from_json(response.json())

    def _translate(self, exc: Exception, ambiguous: bool = False) -> GenerationError:
        """A client or transport exception as a GenerationError with a safe message."""
        import httpx
        from replicate.exceptions import ReplicateError

        metrics.add_metric(name="ProviderErrors", unit=MetricUnit.Count, value=1)
        if isinstance(exc, ReplicateError):
            status = exc.status or 0
            logger.warning("Replicate error", extra={"status": status, "title": exc.title})
            if status == 429:
                return RateLimited("Replicate is rate limiting us", wait=_throttle_wait(exc.detail))
            if status in (401, 403):
                return PermanentError("Replicate refused the API token", code="PROVIDER_AUTH")
            if status == 402:
                return PermanentError("The Replicate account has insufficient credit", code="PROVIDER_BILLING")
            if status == 404:
                return PermanentError("Replicate does not know this model or prediction", code="MODEL_NOT_FOUND")
            if status == 422:
                return PermanentError(f"Replicate refused the input: {_safe(exc.detail)}", code="INVALID_INPUT")
            if status >= 500:
                kind = AmbiguousCreate if ambiguous else TransientError
                return kind(f"Replicate answered HTTP {status}", code="PROVIDER_UNAVAILABLE")
            return PermanentError(f"Replicate answered HTTP {status}", code="PROVIDER_ERROR")
        if isinstance(exc, httpx.TimeoutException):
            logger.warning("Replicate timed out", extra={"error": type(exc).__name__})
            kind = AmbiguousCreate if ambiguous else TransientError
            return kind("Replicate did not answer in time", code="PROVIDER_TIMEOUT")
        if isinstance(exc, httpx.TransportError):
            logger.warning("Replicate unreachable", extra={"error": type(exc).__name__})
            kind = AmbiguousCreate if ambiguous else TransientError
            return kind("Replicate could not be reached", code="PROVIDER_UNAVAILABLE")
        logger.exception("Unexpected error from the Replicate client")
        return TransientError("Unexpected error talking to Replicate", code="PROVIDER_UNAVAILABLE")


class ReplicateGeneration:
    """The generation port on Replicate. The API client is made on first use, so a missing token
    fails the attempt (PROVIDER_AUTH) only once the job is marked processing."""

    remote = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.calls_back = bool(settings.webhook_base_url)

    @cached_property
    def api(self) -> Replicate:
        from shared.secrets import provider_credentials

        token = provider_credentials().api_token
        if token is None:
            raise PermanentError("No Replicate API token is configured", code="PROVIDER_AUTH")
        settings = self.settings
        return Replicate(token.get_secret_value(), settings.replicate_base_url, settings.replicate_timeout_seconds)

    def start(self, job: Job, run: Run) -> PredictionState:
        """A create that fails ambiguously (timeout, 5xx) may have created the prediction anyway;
        `prediction_requested_at` marks that a create was sent, and before creating again the
        provider's recent predictions are searched for ours (same prompt and per-attempt seed)."""
        if job.prediction_id:
            return self.poll(job.prediction_id)
        model, provider_input = self._model_and_input(job)
        if not run.create_marked:  # an earlier try may have sent a create: look for it first
            if job.prediction_requested_at:
                found = self._adopt(run, model, provider_input, job.prediction_requested_at)
                if found:
                    return found
            run.record({"prediction_requested_at": utcnow()})
        for tries_left in reversed(range(CREATE_TRIES)):
            try:
                prediction = self.api.create(
                    model, provider_input, webhook=self._webhook_url(job), wait=self._sync_wait(run)
                )
                break
            except RateLimited as exc:
                pause = exc.wait + random.uniform(0, 1)
                if not tries_left or not sleep_until(pause, run.until):
                    raise
                logger.info("Rate limited by the provider; waiting", extra={"seconds": round(pause, 1)})
            except AmbiguousCreate:
                found = self._adopt(run, model, provider_input, utcnow() - timedelta(minutes=1))
                if found:
                    return found
                raise  # the workflow retries; the next try searches again before creating
        run.record({"prediction_id": prediction.id})
        waiting = "webhook" if self.calls_back else "poll"
        logger.info(
            "Prediction created", extra={"prediction_id": prediction.id, "status": prediction.status, "wait": waiting}
        )
        return prediction

    def poll(self, prediction_id: str) -> PredictionState:
        return self.api.get(prediction_id)

    def cancel(self, prediction_id: str) -> None:
        self.api.cancel(prediction_id)

    def outputs(self, job: Job, prediction: PredictionState, on_progress: Callable[[int], None]) -> Outputs:
        """Copies the files at once (they vanish within the hour), checked (shared/generation/outputs.py)."""
        from shared.generation.outputs import fetch_image

        if not prediction.outputs:
            raise InvalidOutput("The prediction succeeded without any output")
        images = []
        for index, url in enumerate(prediction.outputs):
            images.append(
                fetch_image(
                    url,
                    allowed_hosts=self.settings.output_hosts,
                    max_bytes=self.settings.max_output_bytes,
                    timeout=self.settings.output_download_timeout,
                )
            )
            on_progress(90 + int(5 * (index + 1) / len(prediction.outputs)))
        metadata = {
            "model": job.model or self.settings.default_model,
            "prediction_id": prediction.id,
            "seed": str(prediction.input.get("seed", "")),
            "predict_time": str(prediction.predict_time or ""),
        }
        return Outputs(images, metadata)

    def _adopt(self, run: Run, model: Model, provider_input: dict, since: datetime) -> PredictionState | None:
        found = self.api.find(model, provider_input, since=since)
        if not found:
            return None
        keep, *extra = found
        for duplicate in extra:  # never leave a second billed prediction running
            logger.warning("Cancelling a duplicate prediction", extra={"prediction_id": duplicate.id})
            cancel_quietly(self, duplicate.id)
        run.record({"prediction_id": keep.id})
        logger.info("Found the prediction of an ambiguous create", extra={"prediction_id": keep.id})
        return keep

    def _model_and_input(self, job: Job) -> tuple[Model, dict[str, Any]]:
        model = model_named(job.model or self.settings.default_model)
        provider_input = dict(job.provider_input or model.input_for(job.request))
        # A seed drawn per attempt (unless the client chose one) makes the input unique, which is
        # how an ambiguous create finds its prediction again.
        provider_input.setdefault("seed", attempt_seed(job.job_id, job.attempt))
        return model, provider_input

    def _webhook_url(self, job: Job) -> str | None:
        base = self.settings.webhook_base_url
        if not base:
            return None
        query = urlencode({"job_id": job.job_id, "attempt": job.attempt, "nonce": job.webhook_nonce})
        return f"{base.rstrip('/')}{WEBHOOK_PATH}?{query}"

    def _sync_wait(self, run: Run) -> int:
        # With webhooks the workflow waits for free; a sync wait would bill the worker for it.
        if self.settings.webhook_base_url:
            return 0
        budget = int(run.until - time.time()) - 1
        return max(0, min(self.settings.replicate_sync_wait_seconds, budget))


def attempt_seed(job_id: str, attempt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{job_id}:{attempt}".encode()).digest()[:4], "big")


def _throttle_wait(detail: str | None) -> float:
    """Seconds to wait after a 429: Retry-After if the reply had one, else the "resets in ~Ns" text."""
    headers = getattr(_last_headers, "value", None)
    retry_after = (headers or {}).get("retry-after", "")
    if retry_after.strip().isdigit():
        return float(retry_after)
    match = _THROTTLE_WAIT.search(detail or "")
    return float(match.group(1)) if match else 10.0


def _is_parse_error(exc: Exception) -> bool:
    return type(exc).__name__ == "ValidationError"


def _safe(text: str | None, limit: int = 200) -> str:
    """Provider text shown to clients: first line, capped."""
    return (text or "").strip().splitlines()[0][:limit] if text and text.strip() else "no details"


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def sleep_until(seconds: float, deadline: float) -> bool:
    """Sleep `seconds` unless that would pass `deadline`; False if it would."""
    if time.time() + seconds >= deadline:
        return False
    time.sleep(seconds)
    return True
