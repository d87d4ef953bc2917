"""Every setting the functions read, in one place, read once per cold start.

Field names are the environment variable names (case-insensitive). CDK sets the resource names on
each function; locally the emulation exports them. The README's settings table lists them all.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    # Resources (set by CDK on deploy, by the emulation locally).
    jobs_table_name: str = "media-jobs"
    jobs_queue_url: str = ""
    outputs_bucket_name: str = "media-outputs"
    state_machine_arn: str = ""

    # Generation.
    replicate_api_token: SecretStr | None = None
    mock_generation_seconds: float = Field(default=2.0, ge=0, le=600)

    # Job lifecycle. JOB_TIMEOUT and MAX_RETRY_ATTEMPTS are also baked into the workflow
    # definition (see infra/spec.py), which passes the deadline to the worker at run time.
    job_timeout: int = Field(default=600, ge=1, le=86_400)
    max_retry_attempts: int = Field(default=3, ge=0, le=10)
    retry_interval_seconds: int = Field(default=2, ge=1, le=300)
    job_retention_days: int = Field(default=30, ge=1)
    presigned_url_ttl: int = Field(default=3600, ge=60, le=604_800)
    # Set from the queue spec: on its last delivery the dispatcher fails the job before the DLQ.
    queue_max_receive_count: int = Field(default=5, ge=1)

    @property
    def mock_mode(self) -> bool:
        return not (self.replicate_api_token and self.replicate_api_token.get_secret_value())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
