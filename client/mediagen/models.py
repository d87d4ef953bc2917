"""The service's response bodies as plain dataclasses.

Each class names the OpenAPI component it mirrors (`SCHEMA`); a test compares them with the live
/openapi.json (every field both ways, the required sets, each field's type, the enums' values), so
the client and the API cannot drift. Unknown fields a newer service may add are ignored (and kept
in `raw` where a caller may want them).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class WebhookEvent(enum.StrEnum):
    """What a request's `webhook` can be told about its job."""

    PROCESSING = "job.processing"
    PROGRESS = "job.progress"
    COMPLETED = "job.completed"
    FAILED = "job.failed"
    CANCELLED = "job.cancelled"


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _convert(next(a for a in typing.get_args(tp) if a is not type(None)), value)
    if origin is list:
        return [_convert(typing.get_args(tp)[0], v) for v in value]
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        return {_convert(key_type, k): _convert(value_type, v) for k, v in value.items()}
    if tp is datetime:
        return datetime.fromisoformat(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp.from_dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    return value


class _Model:
    SCHEMA: typing.ClassVar[str]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        values = {name: _convert(hints[name], data[name]) for name in known if name in data}
        obj = cls(**values)
        if "raw" in {f.name for f in dataclasses.fields(cls)}:  # type: ignore[arg-type]
            object.__setattr__(obj, "raw", dict(data))
        return obj


@dataclass(frozen=True)
class Links(_Model):
    SCHEMA = "Links"
    self: str
    status: str
    cancel: str
    retry: str


@dataclass(frozen=True)
class JobError(_Model):
    SCHEMA = "JobError"
    code: str
    message: str


@dataclass(frozen=True)
class Attempt(_Model):
    SCHEMA = "Attempt"
    attempt: int
    status: JobStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: JobError | None = None
    prediction_id: str | None = None


@dataclass(frozen=True)
class Output(_Model):
    SCHEMA = "OutputView"
    index: int
    url: str
    expires_at: datetime
    content_type: str
    width: int
    height: int
    size_bytes: int


@dataclass(frozen=True)
class Eta(_Model):
    SCHEMA = "Eta"
    start: float
    finish: float | None


@dataclass(frozen=True)
class Metrics(_Model):
    SCHEMA = "JobMetrics"
    queue_wait_seconds: float | None
    time_to_start_seconds: float | None
    predict_seconds: float | None
    output_copy_seconds: float | None
    total_seconds: float | None


@dataclass(frozen=True)
class Usage(_Model):
    """The operations counted for a job's AWS cost."""

    SCHEMA = "Usage"
    transitions: int = 0
    lambda_requests: int = 0
    lambda_gb_seconds: float = 0
    api_requests: int = 0
    write_units: float = 0
    sqs_requests: int = 0
    s3_puts: int = 0


@dataclass(frozen=True)
class ProviderCost(_Model):
    SCHEMA = "ProviderCost"
    usd: float | None
    model: str
    basis: str
    price_as_of: str
    source: str


@dataclass(frozen=True)
class AwsCost(_Model):
    SCHEMA = "AwsCost"
    usd: float
    parts: dict[str, float]
    counted: Usage
    prices_as_of: str


@dataclass(frozen=True)
class Cost(_Model):
    """A job's cost in USD: the provider's charge (None for mock generation) and our AWS cost."""

    SCHEMA = "JobCost"
    provider: ProviderCost | None
    aws: AwsCost
    total_usd: float | None
    currency: str = "USD"


@dataclass(frozen=True)
class MetricsSummary(_Model):
    SCHEMA = "MetricsSummary"
    jobs: int
    total_seconds: dict[str, float]
    mean_seconds: dict[str, float | None]


@dataclass(frozen=True)
class CostAmounts(_Model):
    SCHEMA = "CostAmounts"
    provider: float
    aws: float
    total: float
    aws_parts: dict[str, float]


@dataclass(frozen=True)
class CostSummary(_Model):
    SCHEMA = "CostSummary"
    jobs: int
    total_usd: CostAmounts
    mean_usd: CostAmounts | None


@dataclass(frozen=True)
class Adjustment(_Model):
    SCHEMA = "Adjustment"
    field: str
    requested: Any
    reason: str
    applied: Any = None


@dataclass(frozen=True)
class Accepted(_Model):
    SCHEMA = "JobAccepted"
    job_id: str
    status: JobStatus
    message: str
    created_at: datetime
    links: Links


@dataclass(frozen=True)
class StatusView(_Model):
    SCHEMA = "JobStatusView"
    job_id: str
    status: JobStatus
    progress: int
    attempt: int
    created_at: datetime
    updated_at: datetime
    error: JobError | None = None
    queue_position: int | None = None
    eta_seconds: Eta | None = None
    raw: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)


@dataclass(frozen=True)
class Delivery(_Model):
    """One event sent to the request's webhook: `attempt` is the job's attempt it is about,
    `attempts` the tries so far, `last_status` the receiver's HTTP status (or why there was none),
    `state` pending, delivered or given_up."""

    SCHEMA = "Delivery"
    webhook_id: str
    event: WebhookEvent
    attempt: int
    updated_at: datetime
    attempts: int = 0
    last_status: str | None = None
    state: str = "pending"


@dataclass(frozen=True)
class Detail(_Model):
    SCHEMA = "JobDetail"
    job_id: str
    status: JobStatus
    progress: int
    attempt: int
    created_at: datetime
    updated_at: datetime
    request: dict[str, Any]
    model: str | None
    prediction_id: str | None
    attempts: list[Attempt]
    outputs: list[Output]
    adjustments: list[Adjustment]
    metrics: Metrics
    cost: Cost
    links: Links
    error: JobError | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    queue_position: int | None = None
    eta_seconds: Eta | None = None
    webhook_deliveries: list[Delivery] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)


@dataclass(frozen=True)
class JobSummary(_Model):
    SCHEMA = "JobSummary"
    job_id: str
    status: JobStatus
    progress: int
    prompt: str
    attempt: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JobPage(_Model):
    SCHEMA = "JobPage"
    jobs: list[JobSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class Stats(_Model):
    SCHEMA = "Stats"
    total_jobs: int
    by_status: dict[JobStatus, int]
    success_rate: float | None
    average_duration_seconds: float | None
    metrics: MetricsSummary
    cost: CostSummary


@dataclass(frozen=True)
class ModelInfo(_Model):
    SCHEMA = "ModelInfo"
    name: str
    version: str | None
    parameters: list[str]


@dataclass(frozen=True)
class ModelList(_Model):
    SCHEMA = "ModelList"
    default: str | None
    models: list[ModelInfo]


MODELS: tuple[type[_Model], ...] = (
    Links,
    JobError,
    Attempt,
    Output,
    Eta,
    Metrics,
    Usage,
    ProviderCost,
    AwsCost,
    Cost,
    MetricsSummary,
    CostAmounts,
    CostSummary,
    Adjustment,
    Delivery,
    Accepted,
    StatusView,
    Detail,
    JobSummary,
    JobPage,
    Stats,
    ModelInfo,
    ModelList,
)


def field_names(model: type[_Model]) -> tuple[set[str], set[str]]:
    """(every field, the required ones) of a client model, as the drift test compares them."""
    fields = [f for f in dataclasses.fields(model) if f.init]  # type: ignore[arg-type]
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return {f.name for f in fields}, required
