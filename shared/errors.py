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


class QueueUnavailable(ServiceError):
    status_code = 503
    code = "QUEUE_UNAVAILABLE"


class InvalidCursor(ServiceError):
    status_code = 422
    code = "VALIDATION_ERROR"

    def __init__(self) -> None:
        super().__init__("cursor: not a cursor returned by this API")


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


def parse_error_message(message: str | None) -> tuple[str | None, str]:
    """Split a GenerationError's "CODE: message" back into its parts."""
    message = message or ""
    code, sep, rest = message.partition(": ")
    if sep and code.isupper() and code.replace("_", "").isalnum():
        return code, rest
    return None, message
