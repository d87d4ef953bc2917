"""Replicate, through the official `replicate` client (1.0.7), with every failure mapped onto the
service's error taxonomy: TransientError (the workflow retries) or PermanentError (the job fails).

Client traps handled here (see docs/provider.md):
- official models must be created through `client.models.predictions.create` for `wait` to work;
- the client never retries POST: a 429 on create reaches us, and we honour its wait ourselves;
- its GET retry sleeps for any numeric Retry-After, uncapped: we cap it;
- a create without `wait` disables httpx's timeouts (timeout=None): we keep ours;
- `status: "aborted"` breaks its parser: we read that prediction as raw JSON;
- outputs are never fetched through the client (it would send our token to the file host).
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from shared.catalog import Model
from shared.errors import AmbiguousCreate, GenerationError, PermanentError, RateLimited, TransientError
from shared.generation.predictions import PredictionState
from shared.observability import MetricUnit, logger, metrics

# Longest the client's own GET retry may sleep, whatever Retry-After says.
MAX_CLIENT_RETRY_SLEEP = 5.0
CLIENT_RETRY_ATTEMPTS = 3
# No "start": logs events (every 500 ms while it runs) carry progress and heartbeats; each event
# is a paid API request, Lambda call and job read.
WEBHOOK_EVENTS = ["logs", "completed"]
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
