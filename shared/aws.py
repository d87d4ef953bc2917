"""AWS clients, created on first use and kept for the life of the (warm) container.

Nothing is created at import time, so cold starts only pay for the clients a code path uses and
tests can point everything at the emulation (botocore honours AWS_ENDPOINT_URL). The clients come
from botocore's session, not boto3's: importing boto3 also loads s3transfer and boto3's resource
layer, which nothing here uses (15-35 ms of CPU at every cold start; README, Performance).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

_lock = threading.Lock()  # a botocore session is not thread-safe while creating clients


@cache
def session() -> Any:
    """The botocore session every client here comes from (the emulation hooks its events)."""
    import botocore.session

    return botocore.session.get_session()


@cache
def client(service: str) -> Any:
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=3,
        read_timeout=10,
        signature_version="s3v4" if service == "s3" else None,
    )
    with _lock:
        return session().create_client(service, config=config)


def reset_clients() -> None:
    """Forget cached clients (the emulation calls this when it moves its endpoint)."""
    client.cache_clear()


def new_session() -> Any:
    """Start over with a fresh session (the emulation, before it installs its hooks)."""
    reset_clients()
    session.cache_clear()
    return session()


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError, or "" for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
