"""Typed errors: one class per thing a caller handles differently."""

from __future__ import annotations

from typing import Any


class MediagenError(Exception):
    """Base of every error this package raises."""


class ConfigurationError(MediagenError):
    """The client's settings cannot work: a URL that is not http(s)://host, a stack outputs file
    that is not one, SigV4 signing without botocore."""


class APIConnectionError(MediagenError):
    """The service could not be reached or did not answer in time (after the retries)."""


class APIError(MediagenError):
    """The service answered with an error (its documented error body)."""

    def __init__(self, status_code: int, code: str, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {detail}" if code else detail)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.body = body or {}
        self.request_id: str | None = self.body.get("request_id")


class ValidationError(APIError):
    """422: `fields` names each offending field (e.g. `parameters.width`)."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.body.get("errors") or [])

    @property
    def fields(self) -> list[str]:
        return [e.get("field", "") for e in self.errors]


class AuthError(APIError):
    """401/403: missing, wrong or revoked credentials."""


class NotFound(APIError):
    """404: no such job (or route)."""


class Conflict(APIError):
    """409: not possible in the job's current status. (A submit whose Idempotency-Key is still in
    flight, IDEMPOTENCY_IN_PROGRESS, is retried first: this is raised only when the retries ran out.)"""


class RateLimited(APIError):
    """429 after the retries; `retry_after` is how long the service asked to wait, in seconds."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx after the retries."""


class UnexpectedResponse(MediagenError):
    """An answer that is not what the API documents (not JSON, or not the expected shape): most often
    a URL that points at something other than this service."""


class DownloadError(MediagenError):
    """An output could not be downloaded, or is not what its content type says."""


class WaitTimeout(MediagenError):
    """`wait(timeout=...)` ran out before the job finished (the job keeps running)."""
