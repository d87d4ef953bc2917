"""The one description of the system's resources, used by the local emulation and by CDK alike,
so the two cannot drift (a contract test compares this spec with the synthesized template).

Pure data and a few pure functions: no AWS SDK, no CDK, safe to import anywhere but Lambda code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import job_store

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DEFINITION = ROOT / "infra" / "statemachine" / "job.asl.json"

# The Lambda runtime's Python: the functions' runtime (python3.12) and the interpreter that compiles
# their bundles' bytecode both come from here (.pyc files only load on the same minor version).
LAMBDA_PYTHON = "3.12"


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class TableSpec:
    partition_key: str
    indexes: tuple[Index, ...]
    ttl_attribute: str
    # Every change, with the item before and after: the stats counters are kept from it.
    stream_view_type: str = "NEW_AND_OLD_IMAGES"


@dataclass(frozen=True)
class StreamSourceSpec:
    """The table stream's event source (functions/counters)."""

    batch_size: int
    # How long records gather before an invoke: what the stats lag by, at most (plus the invoke).
    max_batching_window_seconds: int
    retry_attempts: int
    # Only changes of job items (records of counters, keys, queue items... are not delivered).
    filters: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class QueueSpec:
    # At least 6x the consumer's timeout (AWS guidance for SQS event sources with batching).
    visibility_timeout_seconds: int
    max_receive_count: int
    retention_seconds: int
    dlq_retention_seconds: int
    batch_size: int
    max_batching_window_seconds: int
    # Bounds how many dispatchers run at once, so workflows start no faster than the provider allows.
    max_concurrency: int


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    timeout_seconds: int
    memory_mb: int
    # The pyproject dependency group its bundle installs: only the worker side needs the
    # provider client and Pillow.
    dependency_group: str = "api"
    handler: str = "app.handler"

    @property
    def source_dir(self) -> Path:
        return ROOT / "functions" / self.name


@dataclass(frozen=True)
class WorkflowSpec:
    definition: Path
    retry_max_delay_seconds: int
    # The failure-recording task is a few DynamoDB calls.
    finalizer_task_timeout_seconds: int


TABLE = TableSpec(
    partition_key=job_store.PK,
    indexes=(
        Index(job_store.STATUS_INDEX, job_store.STATUS, job_store.CREATED_AT),
        Index(job_store.CREATED_INDEX, job_store.ENTITY, job_store.CREATED_AT),
        Index(job_store.OWNER_INDEX, job_store.OWNER, job_store.CREATED_AT),
        Index(job_store.OWNER_STATUS_INDEX, job_store.OWNER_STATUS, job_store.CREATED_AT),
    ),
    ttl_attribute=job_store.TTL_ATTRIBUTE,
)

FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        # 256 MB: about 80 MB resident once imported with its clients; a request mostly waits on
        # DynamoDB, so its billed GB-s halves (CPU-bound parts, such as a cold start, run slower).
        FunctionSpec("api", timeout_seconds=29, memory_mb=256),
        FunctionSpec("dispatcher", timeout_seconds=30, memory_mb=256),
        # Lambda's maximum: the worker stops itself at the job's deadline (JOB_TIMEOUT) anyway.
        # 512 MB: it waits on the network (create, download, upload); no sync wait with webhooks.
        FunctionSpec("worker", timeout_seconds=900, memory_mb=512, dependency_group="worker"),
        # Cancels the provider's prediction of a failed job: the provider client, without Pillow.
        FunctionSpec("finalizer", timeout_seconds=30, memory_mb=256, dependency_group="provider"),
        # Delivers client webhooks: httpx, without the provider client or Pillow.
        FunctionSpec("notifier", timeout_seconds=60, memory_mb=256, dependency_group="http"),
        # The API key check (shared/auth.py): one GetItem.
        FunctionSpec("authorizer", timeout_seconds=10, memory_mb=256),
        # The provider's webhooks, on a function URL of their own: a signature check, a read and
        # at most a write or an invoke of the worker per delivery.
        FunctionSpec("webhook", timeout_seconds=10, memory_mb=256),
        # The stats counters, from the table's stream: one transaction per batch of changes.
        FunctionSpec("counters", timeout_seconds=60, memory_mb=256),
    )
}

QUEUE = QueueSpec(
    visibility_timeout_seconds=6 * FUNCTIONS["dispatcher"].timeout_seconds,
    max_receive_count=5,
    retention_seconds=14 * 86_400,
    dlq_retention_seconds=14 * 86_400,
    # One message per dispatcher invocation: jobs then start in about the order they were queued,
    # which is what a queued job's position and ETA count on (with batches of 10 and 2 dispatchers,
    # two batches drain side by side and a job's turn can be off by up to a batch). The dispatcher
    # paces itself between starts anyway, so batching saved invocations, not time.
    batch_size=1,
    max_batching_window_seconds=0,
    max_concurrency=2,
)

# Client webhook events. Retries are re-sent messages with a delay (not receives), so few receives
# reach the DLQ: only events whose delivery could not even be scheduled.
NOTIFY_QUEUE = QueueSpec(
    visibility_timeout_seconds=6 * FUNCTIONS["notifier"].timeout_seconds,
    max_receive_count=5,
    retention_seconds=4 * 86_400,
    dlq_retention_seconds=14 * 86_400,
    batch_size=10,
    max_batching_window_seconds=1,
    max_concurrency=5,
)

COUNTER_STREAM = StreamSourceSpec(
    batch_size=100,
    max_batching_window_seconds=10,
    retry_attempts=10,
    filters=(
        {"dynamodb": {"NewImage": {job_store.ENTITY: {"S": [job_store.JOB_ENTITY]}}}},
        {"dynamodb": {"OldImage": {job_store.ENTITY: {"S": [job_store.JOB_ENTITY]}}}},  # a deletion (TTL)
    ),
)

WORKFLOW = WorkflowSpec(
    definition=WORKFLOW_DEFINITION,
    retry_max_delay_seconds=60,
    finalizer_task_timeout_seconds=FUNCTIONS["finalizer"].timeout_seconds + 5,
)


@dataclass(frozen=True)
class WorkflowSettings:
    """The settings baked into the workflow definition (see the README's settings table)."""

    job_timeout_seconds: int
    max_retry_attempts: int
    retry_interval_seconds: int
    poll_interval_seconds: int
    heartbeat_seconds: int

    @classmethod
    def from_settings(cls, settings: Any) -> WorkflowSettings:
        return cls(
            job_timeout_seconds=settings.job_timeout,
            max_retry_attempts=settings.max_retry_attempts,
            retry_interval_seconds=settings.retry_interval_seconds,
            poll_interval_seconds=settings.poll_interval_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
        )

    @property
    def execution_timeout_seconds(self) -> int:
        """The execution's own timeout, a backstop behind the in-workflow deadline: JOB_TIMEOUT plus
        time to record the failure and cancel the prediction (a minute, or JOB_TIMEOUT if shorter)."""
        return self.job_timeout_seconds + min(60, self.job_timeout_seconds)


def workflow_substitutions(function_arns: dict[str, str], settings: WorkflowSettings) -> dict[str, str]:
    """Values for every ${Placeholder} of the ASL file."""
    return {
        "WorkerFunctionArn": function_arns["worker"],
        "FinalizerFunctionArn": function_arns["finalizer"],
        "JobTimeoutSeconds": str(settings.job_timeout_seconds),
        "ExecutionTimeoutSeconds": str(settings.execution_timeout_seconds),
        # Step Functions requires it below the state's timeout (the job deadline).
        "HeartbeatSeconds": str(min(settings.heartbeat_seconds, settings.job_timeout_seconds - 1)),
        "MaxRetryAttempts": str(settings.max_retry_attempts),
        "RetryIntervalSeconds": str(settings.retry_interval_seconds),
        "RetryMaxDelaySeconds": str(WORKFLOW.retry_max_delay_seconds),
        "PollIntervalSeconds": str(settings.poll_interval_seconds),
        # Enough polls to reach the deadline; the deadline, not this count, ends a slow job.
        "PollMaxAttempts": str(-(-settings.job_timeout_seconds // settings.poll_interval_seconds) + 1),
        "WorkerTaskTimeoutSeconds": str(FUNCTIONS["worker"].timeout_seconds + 5),
        "FinalizerTaskTimeoutSeconds": str(WORKFLOW.finalizer_task_timeout_seconds),
    }


PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def placeholders(definition: str) -> set[str]:
    return set(PLACEHOLDER.findall(definition))


def render_workflow(substitutions: dict[str, str]) -> str:
    """The ASL with every placeholder filled in, as CloudFormation's DefinitionSubstitutions does."""
    definition = WORKFLOW.definition.read_text()
    missing = placeholders(definition) - set(substitutions)
    if missing:
        raise ValueError(f"No value for workflow placeholders: {sorted(missing)}")
    return PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], definition)


# Set on every function (infra/stack.py; `make bench` runs the packages with it too). No pydantic
# plugin is installed, and looking for them reads every package's metadata when the first model is
# built: about 15 ms of every cold start.
RUNTIME_ENV = {"PYDANTIC_DISABLE_PLUGINS": "__all__"}

# Environment variable names of the resources, as the functions' Settings read them.
RESOURCE_ENV = {
    "table": "JOBS_TABLE_NAME",
    "queue": "JOBS_QUEUE_URL",
    "bucket": "OUTPUTS_BUCKET_NAME",
    "state_machine": "STATE_MACHINE_ARN",
    "notify_queue": "CLIENT_WEBHOOK_QUEUE_URL",
}
