"""HTTP API Lambda REQUEST authorizer (payload 2.0, simple responses) on the API key: the same
check the local gateway runs with API_AUTH=keys (shared/auth.py)."""

from __future__ import annotations

from shared import auth
from shared.observability import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    return auth.authorize(event)
