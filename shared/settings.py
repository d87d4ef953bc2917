"""Every setting the functions read, in one place, read once per cold start.

Field names are the environment variable names (case-insensitive). CDK sets the resource names on
each function; locally the emulation exports them. The README's settings table lists them all.
A plain pydantic model filled from os.environ: pydantic-settings, which did the same, took about
as long to import as pydantic itself, at every cold start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Settings(BaseModel):
    """Settings(...) takes explicit values only (the deployment validates its own with it);
    `from_environment()` reads the process's environment."""

    model_config = ConfigDict(extra="ignore")

    # Resources (set by CDK on deploy, by the emulation locally).
    jobs_table_name: str = "media-jobs"
    jobs_queue_url: str = ""
    outputs_bucket_name: str = "media-outputs"
    state_machine_arn: str = ""
    # The worker, for the provider webhook's hand-over of a finished prediction (shared/webhooks.py).
    worker_function_name: str = "worker"
    # Set from the queue spec: on its last delivery the dispatcher fails the job before the DLQ;
    # the dispatcher's maximum concurrency splits the dispatch rate between its instances.
    queue_max_receive_count: int = Field(default=5, ge=1)
    queue_max_concurrency: int = Field(default=2, ge=1)
    # Workflows started per second, all dispatchers together: below the provider's create limit
    # (Replicate: 600/min), so bursts wait in the queue instead of meeting 429s.
    dispatch_rate_per_second: float = Field(default=8.0, gt=0, le=1000)

    # Generation. Without a token (in the environment or the deployed secret), the mock generator.
    replicate_api_token: SecretStr | None = None
    # Deployed: a Secrets Manager secret {"api_token": ..., "webhook_secret": ...} (read when needed).
    replicate_secret_arn: str | None = None
    # The provider's webhook signing secret; fetched from the provider API when not set.
    replicate_webhook_secret: SecretStr | None = None
    replicate_base_url: str | None = None
    replicate_output_hosts: str = "replicate.delivery,*.replicate.delivery"
    # Read timeout of calls to the provider API (a sync-mode create waits its wait time on top).
    replicate_timeout_seconds: float = Field(default=30, gt=0, le=120)
    default_model: str = "black-forest-labs/flux-schnell"
    # Public base URL of this API: set, the workflow waits for signed webhooks; unset, it polls.
    webhook_base_url: str | None = None
    # Seconds the create call may wait for a fast model to finish (Prefer: wait); 0 disables.
    replicate_sync_wait_seconds: int = Field(default=5, ge=0, le=60)
    poll_interval_seconds: int = Field(default=3, ge=1, le=60)
    # Longest silence (no webhook, no poll) before the workflow stops waiting and polls instead.
    heartbeat_seconds: int = Field(default=60, ge=1, le=3600)
    max_output_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    output_download_timeout: float = Field(default=30, gt=0, le=300)
    mock_generation_seconds: float = Field(default=2.0, ge=0, le=600)

    # Job lifecycle. JOB_TIMEOUT, MAX_RETRY_ATTEMPTS, RETRY_INTERVAL_SECONDS, POLL_INTERVAL_SECONDS
    # and HEARTBEAT_SECONDS are also baked into the workflow definition (see infra/spec.py).
    job_timeout: int = Field(default=600, ge=2, le=86_400)
    max_retry_attempts: int = Field(default=3, ge=0, le=10)
    retry_interval_seconds: int = Field(default=2, ge=1, le=300)
    job_retention_days: int = Field(default=30, ge=1)
    # Retry past this is a 409: the job item keeps every attempt's history (DynamoDB: 400 KB).
    max_attempts_per_job: int = Field(default=20, ge=1, le=100)
    presigned_url_ttl: int = Field(default=3600, ge=60, le=604_800)

    # Client webhooks. The secret of jobs made without an API key; unset (deployed): the one stored
    # in the jobs table (shared/signing.py). Keys have their own.
    client_webhook_secret: SecretStr | None = None
    client_webhook_queue_url: str = ""
    # Only for local testing: allows http and loopback/private targets. Never set on deploy.
    client_webhook_allow_private: bool = False
    client_webhook_retry_seconds: float = Field(default=5, gt=0, le=900)
    client_webhook_retry_window_seconds: float = Field(default=3600, gt=0, le=86_400)
    client_webhook_timeout_seconds: float = Field(default=10, gt=0, le=60)
    # Access. "keys": every /api/v1 route needs a Bearer API key (deployed always; locally
    # API_AUTH=keys); "none": local only, every caller is "anonymous". Quotas apply per key.
    api_auth: Literal["none", "keys"] = "none"
    max_active_jobs_per_key: int = Field(default=10, ge=1)
    max_submits_per_minute_per_key: int = Field(default=60, ge=1)

    @property
    def mock_mode(self) -> bool:
        """No provider configured. Decided without I/O: the deployed secret counts as configured."""
        token = self.replicate_api_token and self.replicate_api_token.get_secret_value()
        return not (token or self.replicate_secret_arn)

    @property
    def output_hosts(self) -> list[str]:
        return [host.strip().lower() for host in self.replicate_output_hosts.split(",") if host.strip()]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The variables named like a field (in any case), validated: strings become numbers,
        booleans ("true", "1", ...) and secrets by the fields' types."""
        fields = cls.model_fields
        return cls.model_validate({name.lower(): v for name, v in environ.items() if name.lower() in fields})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environment()
