"""Domain models: what a job is, what a client may ask for, and how a job may change status."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.usage import Usage

MAX_PROMPT_LENGTH = 2000


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# Every allowed status change. Anything else is refused (409 at the API, a no-op in the workflow),
# so a job never steps backwards: a completed job never becomes processing again.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    # Retry starts a new attempt of a failed or cancelled job.
    JobStatus.FAILED: frozenset({JobStatus.PENDING}),
    JobStatus.CANCELLED: frozenset({JobStatus.PENDING}),
}

# DynamoDB stores numbers from 1e-130 to 1e126 in magnitude; a smaller guidance scale means 0 anyway.
MIN_GUIDANCE_SCALE = 1e-6


def _printable(text: str) -> str:
    """Text we store and send on: no NUL or other control characters (tab and newlines aside)."""
    if any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text):
        raise ValueError("Control characters (such as NUL) are not allowed")
    return text


def _guidance_scale(value: float) -> float:
    if 0 < value < MIN_GUIDANCE_SCALE:
        raise ValueError(f"Input should be 0 or at least {MIN_GUIDANCE_SCALE}")
    return value


Text = Annotated[str, AfterValidator(_printable)]
Prompt = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PROMPT_LENGTH),
    AfterValidator(_printable),
]


class WebhookEvent(StrEnum):
    """What a client webhook can be told about a job."""

    PROCESSING = "job.processing"
    PROGRESS = "job.progress"
    COMPLETED = "job.completed"
    FAILED = "job.failed"
    CANCELLED = "job.cancelled"


DEFAULT_WEBHOOK_EVENTS = (WebhookEvent.COMPLETED, WebhookEvent.FAILED, WebhookEvent.CANCELLED)
MAX_WEBHOOK_URL_LENGTH = 2048


class GenerationParameters(BaseModel):
    """The old service's `parameters` object, plus optional extras (all with defaults).

    Numbers are strict: `"512"`, `512.0` and `true` are not integers, `"7.5"` is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)

    width: int = Field(default=1024, ge=64, le=2048, multiple_of=8, description="Image width in pixels")
    height: int = Field(default=1024, ge=64, le=2048, multiple_of=8, description="Image height in pixels")
    num_inference_steps: int = Field(default=28, ge=1, le=100, description="Denoising steps")
    guidance_scale: Annotated[float, AfterValidator(_guidance_scale)] = Field(
        default=7.5, ge=0, le=30, allow_inf_nan=False, description=f"Prompt adherence: 0, or {MIN_GUIDANCE_SCALE} to 30"
    )
    negative_prompt: Text | None = Field(default=None, max_length=MAX_PROMPT_LENGTH)
    num_outputs: int = Field(default=1, ge=1, le=4, description="Number of images to generate")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Fix for reproducible output")


class GenerateRequest(BaseModel):
    """Body of `POST /api/v1/generate`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prompt": "a lighthouse at dawn, oil painting",
                    "parameters": {"width": 512, "height": 512, "num_inference_steps": 20, "guidance_scale": 7.5},
                }
            ]
        },
    )

    prompt: Prompt = Field(description=f"What to draw (1 to {MAX_PROMPT_LENGTH} characters)")
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)
    model: Text | None = Field(
        default=None,
        max_length=200,
        description="A model from the allowlist (see GET /api/v1/models); default: the DEFAULT_MODEL setting",
    )
    # Checked for SSRF at submit (shared/safe_url.py), again at every delivery.
    webhook: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_WEBHOOK_URL_LENGTH,
        description="An https URL that receives signed Standard Webhooks deliveries of this job's events",
    )
    webhook_events: list[WebhookEvent] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS),
        min_length=1,
        max_length=len(WebhookEvent),
        description="The events delivered to `webhook`; default: the three terminal ones",
    )


class JobError(BaseModel):
    """Why a job or one of its attempts failed. `code` is stable (see the README); `message` is safe to show."""

    code: str
    message: str


class OutputFile(BaseModel):
    key: str
    content_type: str
    width: int
    height: int
    size_bytes: int


class Adjustment(BaseModel):
    """A parameter of a request that names no model, adapted to the default model instead of refused
    (the old service's requests had no model and must keep running). `applied` null: dropped."""

    field: str
    requested: Any
    applied: Any = None
    reason: str


class Attempt(BaseModel):
    """One run of a job. Retry starts a new one; the history is kept on the job."""

    attempt: int
    status: JobStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: JobError | None = None
    prediction_id: str | None = Field(default=None, description="Its prediction on Replicate, if it made one")


class Job(BaseModel):
    job_id: str
    status: JobStatus
    # Who created it (an API key's owner, the IAM operator, or "anonymous" locally): only they see it.
    owner: str = "anonymous"
    # The API key that submitted it (None: an operator, or no keys): its secret signs the webhooks.
    key_id: str | None = None
    attempt: int = 1
    request: GenerateRequest
    progress: int = 0
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    error: JobError | None = None
    outputs: list[OutputFile] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)
    # The model that runs the job and its input as sent to the provider (None: mock generation).
    model: str | None = None
    provider_input: dict[str, Any] | None = None
    adjustments: list[Adjustment] = Field(default_factory=list)
    # The current attempt's prediction on the provider, once created.
    prediction_id: str | None = None
    # The current attempt's place in dispatch order (shared/job_store.py's queue item) and timings:
    # queued (submit or retry), its workflow started, generation and output copy durations.
    queue_seq: int | None = None
    queued_at: datetime | None = None
    dispatched_at: datetime | None = None
    predict_seconds: float | None = None
    output_copy_seconds: float | None = None
    # What it cost us on AWS so far, all attempts (shared/usage.py).
    usage: Usage = Field(default_factory=Usage)
    # Bookkeeping, never shown to clients: optimistic-locking version, TTL (epoch seconds), the
    # workflow's callback token and the secret part of the attempt's webhook URL.
    version: int = 0
    expires_at: int | None = None
    task_token: str | None = None
    webhook_nonce: str | None = None
    prediction_requested_at: datetime | None = None

    def prediction_of(self, attempt: int) -> str | None:
        """An attempt's prediction: the current one's, or the one its history kept when it ended."""
        if attempt == self.attempt:
            return self.prediction_id
        return next((a.prediction_id for a in reversed(self.attempts) if a.attempt == attempt), None)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(value: datetime) -> str:
    """Fixed-width UTC timestamps sort lexicographically, which the status index relies on."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
