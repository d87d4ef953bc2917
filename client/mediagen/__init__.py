"""Client library for the media generation service: submit a prompt, follow the job, download."""

from mediagen._core import RetryPolicy
from mediagen.aio import AsyncClient, AsyncJob
from mediagen.client import Client, Job
from mediagen.errors import (
    APIConnectionError,
    APIError,
    AuthError,
    ConfigurationError,
    Conflict,
    DownloadError,
    MediagenError,
    NotFound,
    RateLimited,
    ServerError,
    UnexpectedResponse,
    ValidationError,
    WaitTimeout,
)
from mediagen.models import JobStatus, WebhookEvent

__version__ = "0.1.0"
__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AsyncJob",
    "AuthError",
    "Client",
    "ConfigurationError",
    "Conflict",
    "DownloadError",
    "Job",
    "JobStatus",
    "MediagenError",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "UnexpectedResponse",
    "ValidationError",
    "WaitTimeout",
    "WebhookEvent",
]
