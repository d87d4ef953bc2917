"""API keys and callers: who is calling, and what they may see.

Keys are random (`mg_` + 256 bits), shown once, stored only as their SHA-256 in the jobs table
(`pk` = "apikey#<hash>", entity "apikey", listed by the `by-created` index) with owner, name,
creation time, state and optional limit overrides. Each key has its own webhook signing secret,
made with it in a sibling item the authorizer never reads (shared/signing.py).

`authorize` is the one check: the deployed HTTP API Lambda authorizer (functions/authorizer) and
the local gateway (API_AUTH=keys) run it. It always answers isAuthorized=true: a refused key
reaches the api function as a `denied` reason, so the caller gets a 401 in the API's own error
shape (API Gateway's own deny is a bare 403).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from shared import signing
from shared.aws import client
from shared.errors import ServiceError
from shared.models import to_iso, utcnow
from shared.observability import logger
from shared.settings import get_settings

KEY_PREFIX = "mg_"
KEY_ITEM_PREFIX = "apikey#"
KEY_ENTITY = "apikey"
ANONYMOUS = "anonymous"  # local API_AUTH=none: every caller
OPERATOR = "operator"  # an IAM caller whose principal the gateway did not name
ADMIN_PREFIX = "/admin/v1/"
API_PREFIX = "/api/v1/"


class Unauthorized(ServiceError):
    status_code = 401
    code = "UNAUTHORIZED"


@dataclass(frozen=True)
class Caller:
    owner: str
    # None: no quota (anonymous locally, operators); else the key's limits.
    max_active_jobs: int | None = None
    max_submits_per_minute: int | None = None
    operator: bool = False
    key_id: str | None = None  # the API key's id (None: no key), whose secret signs the job's webhooks

    @property
    def scope(self) -> str | None:
        """The owner whose jobs this caller sees; None: every job (operators)."""
        return None if self.operator else self.owner


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _table() -> str:
    return get_settings().jobs_table_name


# ---- the check -----------------------------------------------------------------------------------
def authorize(event: dict[str, Any]) -> dict[str, Any]:
    """An HTTP API REQUEST authorizer (payload 2.0, simple responses) on `Authorization: Bearer`."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    value = headers.get("authorization") or ""
    scheme, _, key = value.partition(" ")
    source_ip = (event.get("requestContext") or {}).get("http", {}).get("sourceIp")
    if scheme.lower() != "bearer" or not key.strip().startswith(KEY_PREFIX):
        return _deny("malformed" if value else "missing", source_ip)
    digest = hash_key(key.strip())
    item = client("dynamodb").get_item(TableName=_table(), Key={"pk": {"S": KEY_ITEM_PREFIX + digest}}).get("Item")
    if not item or item.get("entity", {}).get("S") != KEY_ENTITY:
        return _deny("unknown", source_ip)
    if item.get("state", {}).get("S") != "active":
        return _deny("revoked", source_ip, item["key_id"]["S"])
    context: dict[str, Any] = {"owner": item["key_owner"]["S"], "key_id": item["key_id"]["S"]}
    for name in ("max_active_jobs", "max_submits_per_minute"):
        if name in item:
            context[name] = int(item[name]["N"])
    return {"isAuthorized": True, "context": context}


def _deny(reason: str, source_ip: str | None, key_id: str | None = None) -> dict[str, Any]:
    # Never the key itself: its id (a prefix of the hash) at most.
    logger.warning("API key refused", extra={"reason": reason, "key_id": key_id, "source_ip": source_ip})
    return {"isAuthorized": True, "context": {"denied": reason}}


def caller_of(event: dict[str, Any]) -> Caller:
    """The caller of an api request, from what the authorizer (or IAM) put in its context."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if "iam" in authorizer:
        # Jobs an operator submits belong to its IAM principal, so they can be told apart by owner.
        principal = (authorizer["iam"] or {}).get("userArn")
        return Caller(owner=f"iam:{principal}" if principal else OPERATOR, operator=True)
    context = authorizer.get("lambda")
    if context is None:
        if get_settings().api_auth == "keys":
            raise Unauthorized("Authorization: a Bearer API key is required")
        return Caller(owner=ANONYMOUS)
    if context.get("denied") or not context.get("owner"):
        raise Unauthorized("Authorization: a valid Bearer API key is required")
    settings = get_settings()
    return Caller(
        owner=str(context["owner"]),
        key_id=str(context["key_id"]) if context.get("key_id") else None,
        max_active_jobs=int(context.get("max_active_jobs") or settings.max_active_jobs_per_key),
        max_submits_per_minute=int(context.get("max_submits_per_minute") or settings.max_submits_per_minute_per_key),
    )


def admin_as_api(event: dict[str, Any]) -> dict[str, Any]:
    """Operators' IAM-signed /admin/v1/<route> is /api/v1/<route> over every owner; without an
    IAM identity it is no route at all (404)."""
    path = event.get("rawPath") or ""
    if not path.startswith(ADMIN_PREFIX):
        return event
    iam = "iam" in ((event.get("requestContext") or {}).get("authorizer") or {})
    event = dict(event, rawPath=(API_PREFIX if iam else "/admin-unavailable") + path[len(ADMIN_PREFIX) :])
    http = dict(event.get("requestContext", {}).get("http") or {}, path=event["rawPath"])
    event["requestContext"] = dict(event.get("requestContext") or {}, http=http)
    return event


# ---- management (ops/api_keys.py) ----------------------------------------------------------------
@dataclass(frozen=True)
class NewKey:
    key: str  # shown once, stored as its hash
    key_id: str
    signing_secret: str  # signs the webhooks of the key's jobs; shown with it, rotatable


def create_key(name: str, max_active_jobs: int | None = None, max_submits_per_minute: int | None = None) -> NewKey:
    """A new key for `name` (its owner) and its signing secret, stored together in one transaction."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hash_key(key)
    key_id = digest[:16]
    item: dict[str, Any] = {
        "pk": {"S": KEY_ITEM_PREFIX + digest},
        "entity": {"S": KEY_ENTITY},
        "key_id": {"S": key_id},
        "key_owner": {"S": name},
        "name": {"S": name},
        "created_at": {"S": to_iso(utcnow())},
        "state": {"S": "active"},
    }
    for field, value in (("max_active_jobs", max_active_jobs), ("max_submits_per_minute", max_submits_per_minute)):
        if value is not None:
            item[field] = {"N": str(value)}
    secret = signing.new_secret()
    client("dynamodb").transact_write_items(
        TransactItems=[
            {"Put": {"TableName": _table(), "Item": new, "ConditionExpression": "attribute_not_exists(pk)"}}
            for new in (item, signing.item(key_id, secret))
        ]
    )
    return NewKey(key=key, key_id=key_id, signing_secret=secret)


def _key_items() -> list[dict[str, Any]]:
    from shared.job_store import CREATED_INDEX

    pks: list[str] = []
    pages = (
        client("dynamodb")
        .get_paginator("query")
        .paginate(
            TableName=_table(),
            IndexName=CREATED_INDEX,
            KeyConditionExpression="entity = :e",
            ExpressionAttributeValues={":e": {"S": KEY_ENTITY}},
            ScanIndexForward=False,
        )
    )
    for page in pages:
        pks += [item["pk"]["S"] for item in page.get("Items", [])]
    return [
        client("dynamodb").get_item(TableName=_table(), Key={"pk": {"S": pk}}, ConsistentRead=True)["Item"]
        for pk in pks
    ]


def list_keys() -> list[dict[str, Any]]:
    """Every key's metadata (never the key, nor its full hash), newest first."""
    keys = []
    for item in _key_items():
        entry = {name: item[name]["S"] for name in ("key_id", "name", "created_at", "state")}
        entry["owner"] = item["key_owner"]["S"]
        entry |= {n: int(item[n]["N"]) for n in ("max_active_jobs", "max_submits_per_minute") if n in item}
        keys.append(entry)
    return keys


def rotate_signing_secrets(name: str, grace_hours: float = signing.GRACE_HOURS) -> dict[str, str]:
    """A new signing secret for every active key of `name` (key id -> secret); each previous one
    keeps signing for `grace_hours`."""
    return {
        item["key_id"]["S"]: signing.rotate(item["key_id"]["S"], grace_hours)
        for item in _key_items()
        if item["name"]["S"] == name and item["state"]["S"] == "active"
    }


def revoke_keys(name: str, key_id: str | None = None) -> int:
    """Revoke every active key of `name`, or only its key `key_id` (to rotate: create a new key,
    move the app to it, then revoke the old one by id); how many were revoked."""
    revoked = 0
    for item in _key_items():
        if key_id is not None and item["key_id"]["S"] != key_id:
            continue
        if item["name"]["S"] == name and item["state"]["S"] == "active":
            client("dynamodb").update_item(
                TableName=_table(),
                Key={"pk": item["pk"]},
                UpdateExpression="SET #s = :r, revoked_at = :now",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":r": {"S": "revoked"}, ":now": {"S": to_iso(utcnow())}},
            )
            revoked += 1
    return revoked
