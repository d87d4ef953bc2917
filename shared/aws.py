"""AWS clients, created on first use and kept for the life of the (warm) container.

Nothing is created at import time, so cold starts only pay for the clients a code path uses and
tests can point everything at the emulation (boto3 honours AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

_lock = threading.Lock()  # boto3's default session is not thread-safe while creating clients


@cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=3,
        read_timeout=10,
        signature_version="s3v4" if service == "s3" else None,
    )
    with _lock:
        return boto3.client(service, config=config)


def reset_clients() -> None:
    """Forget cached clients (the emulation calls this when it moves its endpoint)."""
    client.cache_clear()


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError, or "" for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
