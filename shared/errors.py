"""Domain errors, in one module.

Two families:
- `ServiceError`: refused requests. The API maps each to its HTTP status in one place.
- `GenerationError`: raised by the worker inside the workflow. The Lambda error type is the class
  name, which the workflow's Retry matches (`TransientError` is retried, everything else is
  caught and recorded), and the message starts with a stable code: "CODE: safe message".
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JobNotFound(ServiceError):
    status_code = 404
    code = "JOB_NOT_FOUND"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} not found")


class InvalidTransition(ServiceError):
    status_code = 409
    code = "INVALID_STATE"

    def __init__(self, message: str, current_status: str) -> None:
        super().__init__(message)
        self.current_status = current_status


class AttemptLimitReached(ServiceError):
    """A job's attempts are bounded, so its item (which keeps their history) stays small."""

    status_code = 409
    code = "ATTEMPT_LIMIT_REACHED"

    def __init__(self, limit: int) -> None:
        super().__init__(f"This job has had its {limit} attempts (MAX_ATTEMPTS_PER_JOB); submit it again as a new job")


class QueueUnavailable(ServiceError):
    status_code = 503
    code = "QUEUE_UNAVAILABLE"


class InvalidParameter(ServiceError):
    """A request that is valid JSON and shape, but not for the model it would run on."""

    status_code = 422
    code = "VALIDATION_ERROR"

    def __init__(self, field: str, message: str, location: str = "body") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message
        self.location = location


class UnsupportedMediaType(ServiceError):
    """A body that is not JSON on a route that takes JSON."""

    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class InvalidCursor(InvalidParameter):
    def __init__(self) -> None:
        super().__init__("cursor", "not a cursor returned by this API", location="query")


class IdempotencyKeyReused(InvalidParameter):
    code = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__("Idempotency-Key", "already used for a different request", location="header")


class IdempotencyInProgress(ServiceError):
    status_code = 409
    code = "IDEMPOTENCY_IN_PROGRESS"

    def __init__(self) -> None:
        super().__init__("Idempotency-Key: a request with this key is still in progress; retry shortly")


class GenerationError(Exception):
    """A failed generation attempt. `code` is one of the stable error codes in the README."""

    code = "GENERATION_FAILED"

    def __init__(self, message: str, code: str | None = None) -> None:
        self.code = code or self.code
        self.message = message
        super().__init__(f"{self.code}: {message}")


class TransientError(GenerationError):
    """Worth retrying: the workflow retries it with backoff and jitter."""

    code = "PROVIDER_UNAVAILABLE"


class PermanentError(GenerationError):
    """Retrying cannot help: the job fails at once."""


class DeadlineExceeded(PermanentError):
    code = "JOB_TIMEOUT"


class RateLimited(TransientError):
    """429 from the provider. `wait` is how long it asked us to back off, in seconds."""

    code = "PROVIDER_RATE_LIMITED"

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class AmbiguousCreate(TransientError):
    """A create call failed in a way that leaves open whether the prediction exists."""


class InvalidOutput(PermanentError):
    """The provider's output is not something we can store (bad host, too big, not an image)."""

    code = "INVALID_OUTPUT"


class PredictionRunning(GenerationError):
    """Not an error: the provider is still working. The workflow polls again after an interval."""

    code = "JOB_TIMEOUT"  # what it means if the polls run out


def generation_error_names() -> set[str]:
    """The Lambda error types (class names) whose messages are ours to show: "CODE: message"."""
    names, pending = set(), [GenerationError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending += cls.__subclasses__()
    return names


def parse_error_message(message: str | None) -> tuple[str | None, str]:
    """Split a GenerationError's "CODE: message" back into its parts."""
    message = message or ""
    code, sep, rest = message.partition(": ")
    if sep and code.isupper() and code.replace("_", "").isalnum():
        return code, rest
    return None, message


class QuotaExceeded(ServiceError):
    """A key's quota: 429, with how long to wait before trying again."""

    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ActiveJobsLimit(QuotaExceeded):
    code = "ACTIVE_JOBS_LIMIT"

    def __init__(self, limit: int) -> None:
        super().__init__(f"This key already has {limit} pending or processing jobs (MAX_ACTIVE_JOBS_PER_KEY)", 5)


class SubmitRateLimited(QuotaExceeded):
    code = "RATE_LIMITED"

    def __init__(self, limit: int, retry_after: int) -> None:
        detail = f"This key made {limit} submits within the last minute (MAX_SUBMITS_PER_MINUTE_PER_KEY)"
        super().__init__(detail, retry_after)
