"""Deployment options, read from CDK context (`cdk.json`, or `-c key=value` on the command line).

Every option has a default in `DEFAULTS` (mirrored in cdk.json, so `cdk context` shows them). The
job settings are validated by the functions' own settings model, so a value the functions would
refuse at run time fails the synth instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infra import spec
from shared.settings import Settings

DEFAULTS: dict[str, Any] = {
    # Name of the deployment: part of the stack and function names. "prod" keeps data on delete.
    "stage": "dev",
    "productionStages": ["prod"],
    # The Replicate model the worker runs when a request names none.
    "defaultModel": "black-forest-labs/flux-schnell",
    # true: the functions are not told about the provider secret, so they draw placeholder images
    # (the mock generator): try the deployment without a Replicate account.
    "mockGeneration": False,
    # Job lifecycle: the functions' settings of the same name (see the README's settings table).
    "jobTimeout": 600,
    "maxRetryAttempts": 3,
    "retryIntervalSeconds": 2,
    "presignedUrlTtl": 3600,
    "jobRetentionDays": 30,
    # Operations.
    "logLevel": "INFO",
    "logRetentionDays": 30,
    "apiThrottleRateLimit": 20,
    "apiThrottleBurstLimit": 40,
    # The provider's webhooks have a function (and URL) of their own, throttled by its reserved
    # concurrency: a flood of (forged) deliveries is refused with 429 and never touches the API's
    # limits or the other functions' concurrency. Replicate retries refused deliveries. Reserved
    # at deploy time when the account can spare it (see ReservedConcurrency); 0: never.
    "webhookConcurrency": 10,
    "pendingJobAlarmSeconds": 300,
    "alarmEmail": "",
    # false: no alarms, no dashboard (saves their monthly cost; the secret's $0.40 remains).
    "monitoring": True,
    # Share of workflow executions X-Ray traces (our sampling rule, no per-second reservoir: at a
    # million jobs a month the default rule's 1 trace/s alone would record ~2.6M traces); the
    # functions an execution calls join its trace. Raise it to debug a stage.
    "tracingSampleRate": 0.01,
    # "workflow": functions trace only within a sampled trace (Lambda's PassThrough), so API
    # requests and provider webhooks are not traced. "all": every function starts traces too
    # (Active): Lambda samples those at its own fixed rate, 1 request a second and 5% of the rest
    # per function, which no sampling rule changes (about $30 per million jobs; `make cost`).
    "tracing": "workflow",
    # Browser origins allowed by CORS (API Gateway answers the preflights); empty: CORS off.
    "corsAllowedOrigins": [],
    # "bundles": ship each function's package, built by infra/bundle.py when CDK stages the asset.
    # "source": ship the bare source directories, for the fast offline synth of the tests only
    # (such a template does not run on Lambda).
    "assets": "bundles",
}

STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


@dataclass(frozen=True)
class Config:
    stage: str
    production: bool
    default_model: str
    mock_generation: bool
    job_timeout: int
    max_retry_attempts: int
    retry_interval_seconds: int
    presigned_url_ttl: int
    job_retention_days: int
    log_level: str
    log_retention_days: int
    api_throttle_rate_limit: int
    api_throttle_burst_limit: int
    webhook_concurrency: int
    pending_job_alarm_seconds: int
    alarm_email: str
    monitoring: bool
    tracing_sample_rate: float
    tracing: str
    assets: str
    cors_allowed_origins: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        """Prefix of the physical names this stage sets itself (functions)."""
        return f"media-generation-{self.stage}"

    @classmethod
    def from_context(cls, get: Any) -> Config:
        """`get(key)` returns the context value or None (e.g. `node.try_get_context`)."""
        raw = {key: _value(get(key), default) for key, default in DEFAULTS.items()}
        stage = str(raw["stage"])
        if not STAGE.match(stage):
            raise ValueError(f"stage {stage!r}: lower-case letters, digits and '-', 1-20 characters")
        if str(raw["logLevel"]).upper() not in LOG_LEVELS:
            raise ValueError(f"logLevel must be one of {sorted(LOG_LEVELS)}")
        if int(raw["webhookConcurrency"]) < 0:
            raise ValueError("webhookConcurrency must be 0 (no reservation) or more")
        if not 0 <= float(raw["tracingSampleRate"]) <= 1:
            raise ValueError("tracingSampleRate must be between 0 and 1")
        if raw["tracing"] not in ("workflow", "all"):
            raise ValueError("tracing must be 'workflow' or 'all'")
        if raw["assets"] not in ("bundles", "source"):
            raise ValueError("assets must be 'bundles' or 'source'")
        config = cls(
            stage=stage,
            production=stage in raw["productionStages"],
            default_model=str(raw["defaultModel"]),
            mock_generation=raw["mockGeneration"],
            job_timeout=int(raw["jobTimeout"]),
            max_retry_attempts=int(raw["maxRetryAttempts"]),
            retry_interval_seconds=int(raw["retryIntervalSeconds"]),
            presigned_url_ttl=int(raw["presignedUrlTtl"]),
            job_retention_days=int(raw["jobRetentionDays"]),
            log_level=str(raw["logLevel"]).upper(),
            log_retention_days=int(raw["logRetentionDays"]),
            api_throttle_rate_limit=int(raw["apiThrottleRateLimit"]),
            api_throttle_burst_limit=int(raw["apiThrottleBurstLimit"]),
            webhook_concurrency=int(raw["webhookConcurrency"]),
            pending_job_alarm_seconds=int(raw["pendingJobAlarmSeconds"]),
            alarm_email=str(raw["alarmEmail"] or ""),
            monitoring=raw["monitoring"],
            tracing_sample_rate=float(raw["tracingSampleRate"]),
            tracing=str(raw["tracing"]),
            assets=str(raw["assets"]),
            cors_allowed_origins=tuple(str(o) for o in raw["corsAllowedOrigins"]),
        )
        config.settings()  # the functions' own validation: fail the synth, not the first job
        return config

    def settings(self) -> Settings:
        """The functions' settings as deployed: these options, the model's defaults for the rest
        (never the environment of the machine that synthesizes, or of a test's emulation)."""
        return Settings(**self.function_settings())

    def workflow_settings(self) -> spec.WorkflowSettings:
        """The settings baked into the workflow, from the same Settings as the functions'."""
        return spec.WorkflowSettings.from_settings(self.settings())

    def workflow_setting_names(self) -> set[str]:
        """The Settings fields the workflow definition depends on (spec.WorkflowSettings reads them):
        the functions get them too, so the two never disagree."""
        recorder = _ReadRecorder(self.settings())
        spec.WorkflowSettings.from_settings(recorder)
        return recorder.read

    def function_settings(self) -> dict[str, Any]:
        """The job settings every function reads, by their field name in shared/settings.py."""
        return {
            "job_timeout": self.job_timeout,
            "max_retry_attempts": self.max_retry_attempts,
            "retry_interval_seconds": self.retry_interval_seconds,
            "presigned_url_ttl": self.presigned_url_ttl,
            "job_retention_days": self.job_retention_days,
            "default_model": self.default_model,
        }


class _ReadRecorder:
    """Stands in for Settings and notes which fields are read."""

    def __init__(self, settings: Settings) -> None:
        self._settings, self.read = settings, set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self._settings, name)


def _value(value: Any, default: Any) -> Any:
    # `-c key=value` always gives a string: turn it into the default's type.
    if value is None:
        return default
    if isinstance(default, list) and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(default, bool) and isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {value!r}")
        return value.lower() == "true"
    return value
