"""Client webhook signing secrets (Standard Webhooks `whsec_` + base64 of 24 random bytes), kept in
the jobs table, one item each: `signing#<key id>` per API key (made with the key, shown with it)
and `signing#deployment`, the deployment's own (for jobs made without a key), generated on first
use. Not hashed: they must be readable to sign. Only the notifier may read them (and write the
deployment's), never the key authorizer, which reads the `apikey#` items alone (infra: notify:secret).

A rotation keeps the previous secret for a grace period: deliveries are signed with both, so a
receiver verifies with either while it moves to the new one. `shared/notify.py secret_for` picks
a job's secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

from pydantic import SecretStr

from shared.aws import client, error_code
from shared.models import to_iso, utcnow
from shared.settings import get_settings

ITEM_PREFIX = "signing#"
DEPLOYMENT = "deployment"  # signing#deployment; key ids are hex, so never this
GRACE_HOURS = 24  # the previous secret still signs this long after a rotation


class NoSigningSecret(Exception):
    """No secret item for this id: a key made before keys had their own."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secrets_: list[SecretStr], webhook_id: str, timestamp: int, body: str) -> str:
    """`webhook-signature`: one `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per secret,
    space-separated (Standard Webhooks: a receiver accepts any that matches)."""
    signed = f"{webhook_id}.{timestamp}.{body}".encode()
    parts = []
    for secret in secrets_:
        key = base64.b64decode(secret.get_secret_value().removeprefix("whsec_") + "==")
        parts.append("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode())
    return " ".join(parts)


def item(owner_id: str, secret: str) -> dict[str, Any]:
    """A new secret item (API keys create theirs in the key's own transaction)."""
    return {"pk": {"S": ITEM_PREFIX + owner_id}, "secret": {"S": secret}, "created_at": {"S": to_iso(utcnow())}}


def current(owner_id: str) -> list[SecretStr]:
    """The secrets that sign now: the current one, then the previous one during its grace period."""
    found = _read(owner_id)
    if found is None:
        raise NoSigningSecret(owner_id)
    return _valid(found)


def deployment() -> list[SecretStr]:
    """CLIENT_WEBHOOK_SECRET (local), else the deployment's stored secret."""
    configured = get_settings().client_webhook_secret
    return [configured] if configured else stored_deployment()


def stored_deployment() -> list[SecretStr]:
    """The `signing#deployment` item's secrets, the item made on first use: a conditional put, so
    concurrent first deliveries agree on one secret."""
    found = _read(DEPLOYMENT)
    if found is None:
        try:
            client("dynamodb").put_item(
                TableName=_table(), Item=item(DEPLOYMENT, new_secret()), ConditionExpression="attribute_not_exists(pk)"
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        found = _read(DEPLOYMENT)
        if found is None:
            raise NoSigningSecret(DEPLOYMENT)
    return _valid(found)


def rotate(owner_id: str, grace_hours: float = GRACE_HOURS) -> str:
    """A new current secret; the one it replaces keeps signing for `grace_hours` (only the latest
    previous one: a second rotation within the grace period drops the oldest). An id without a
    secret yet (a key made before keys had their own) gets its first."""
    secret = new_secret()
    try:
        client("dynamodb").update_item(
            TableName=_table(),
            Key={"pk": {"S": ITEM_PREFIX + owner_id}},
            UpdateExpression="SET previous = secret, previous_until = :until, secret = :new, rotated_at = :now",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={
                ":new": {"S": secret},
                ":until": {"N": str(int(time.time() + grace_hours * 3600))},
                ":now": {"S": to_iso(utcnow())},
            },
        )
    except Exception as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        client("dynamodb").put_item(
            TableName=_table(), Item=item(owner_id, secret), ConditionExpression="attribute_not_exists(pk)"
        )
    return secret


def _read(owner_id: str) -> dict[str, Any] | None:
    # Consistent: a rotation signs with the new secret from the next delivery on.
    return (
        client("dynamodb")
        .get_item(TableName=_table(), Key={"pk": {"S": ITEM_PREFIX + owner_id}}, ConsistentRead=True)
        .get("Item")
    )


def _valid(found: dict[str, Any]) -> list[SecretStr]:
    valid = [SecretStr(found["secret"]["S"])]
    if "previous" in found and int(found["previous_until"]["N"]) > time.time():
        valid.append(SecretStr(found["previous"]["S"]))
    return valid


def _table() -> str:
    return get_settings().jobs_table_name
