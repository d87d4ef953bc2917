"""The stats counters, kept from the jobs table's stream (functions/counters), out of the jobs' own
writes: a job's status change is then one conditional write, not a transaction with counters.

Every change of a job item reaches the stream with the item before and after. A batch of changes
is summed into deltas per counter item and applied in one transaction:
- `stats#N` (one of the job store's COUNTER_SHARDS, by batch): jobs per status, `submitted` (jobs
  in the table) and `duration_ms` (summed over completed jobs), read by operators' stats;
- `owner#<owner>`: the same for each owner with a change in the batch, read by its stats. The
  item's `active` count (the key's quota) is not kept here: the job's own transactions keep it.
A job item that is deleted (its TTL expired) leaves the counters, so stats count the jobs in the
table; they lag the jobs by the event source's batching window (seconds).

A failed batch is retried by Lambda as it was: the transaction's ClientRequestToken is derived
from the batch, so one whose transaction committed changes nothing the second time (DynamoDB
remembers a token for 10 minutes). Each model's moving average of job durations (the ETA of queued
jobs, an estimate) is fed from the same records, outside the transaction.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from shared.aws import client
from shared.job_store import (
    COUNTER_PREFIX,
    COUNTER_SHARDS,
    ENTITY,
    JOB_ENTITY,
    OWNER_COUNTER_PREFIX,
    store,
)
from shared.models import JobStatus
from shared.observability import logger

MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems


def apply(records: list[dict[str, Any]]) -> dict[str, int]:
    """Apply one batch of stream records. Returns how many job changes it counted."""
    if not records:
        return {"changes": 0, "counters": 0}
    deltas: dict[str, Counter] = defaultdict(Counter)
    durations: list[tuple[str, float]] = []
    counted = 0
    token = _token(records)
    # A shard chosen by the batch: a retry must make the very same transaction.
    total = f"{COUNTER_PREFIX}{int(token, 16) % COUNTER_SHARDS}"
    for record in records:
        change = record.get("dynamodb") or {}
        old, new = _job(change.get("OldImage")), _job(change.get("NewImage"))
        if old is None and new is None:
            continue
        counted += 1
        delta = _delta(old, new)
        owner = (new or old)["owner"]
        deltas[total].update(delta)
        deltas[OWNER_COUNTER_PREFIX + owner].update(delta)
        if _newly(JobStatus.COMPLETED, old, new) and "duration_ms" in delta:
            durations.append((new.get("model") or "mock", delta["duration_ms"] / 1000))
    writes = {key: Counter({k: v for k, v in d.items() if v}) for key, d in deltas.items()}
    _write({key: d for key, d in writes.items() if d}, token)
    by_model: dict[str, list[float]] = defaultdict(list)
    for model, seconds in durations:
        by_model[model].append(seconds)
    for model, seconds in by_model.items():
        _record_durations(model, seconds)
    return {"changes": counted, "counters": len(writes)}


def _job(image: dict[str, Any] | None) -> dict[str, Any] | None:
    if not image or image.get(ENTITY, {}).get("S") != JOB_ENTITY:
        return None
    return store().plain(image)


def _delta(old: dict[str, Any] | None, new: dict[str, Any] | None) -> Counter:
    """What one change of a job adds to its counters."""
    delta: Counter = Counter()
    if old and new and old["status"] == new["status"]:
        return delta  # progress, prediction id, ...: no status change
    if old:
        delta[old["status"]] -= 1
        if old["status"] == JobStatus.COMPLETED:
            delta["duration_ms"] -= _duration_ms(old)
    if new:
        delta[new["status"]] += 1
        if new["status"] == JobStatus.COMPLETED:
            delta["duration_ms"] += _duration_ms(new)
    delta["submitted"] += (new is not None) - (old is not None)
    return delta


def _newly(status: JobStatus, old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    return bool(new and new["status"] == status and (not old or old["status"] != status))


def _duration_ms(job: dict[str, Any]) -> int:
    if not job.get("started_at") or not job.get("finished_at"):
        return 0
    started, finished = (datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at"))
    return int((finished - started).total_seconds() * 1000)


def _token(records: list[dict[str, Any]]) -> str:
    """The same for a retry of the same batch: its source and its first and last sequence numbers."""
    first, last = records[0], records[-1]
    text = " ".join(
        [first.get("eventSourceARN", ""), first["dynamodb"]["SequenceNumber"], last["dynamodb"]["SequenceNumber"]]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _write(deltas: dict[str, Counter], token: str) -> None:
    updates = [_update(key, delta) for key, delta in sorted(deltas.items())]
    for start in range(0, len(updates), MAX_TRANSACTION_ITEMS):
        chunk = updates[start : start + MAX_TRANSACTION_ITEMS]
        client("dynamodb").transact_write_items(
            TransactItems=[{"Update": u} for u in chunk], ClientRequestToken=f"{token}-{start // 100}"
        )


def _update(key: str, delta: Counter) -> dict[str, Any]:
    names = {f"#c{i}": name for i, name in enumerate(delta)}
    values = {f":c{i}": {"N": str(v)} for i, v in enumerate(delta.values())}
    return {
        "TableName": store().table,
        "Key": {"pk": {"S": key}},
        "UpdateExpression": "ADD " + ", ".join(f"{n} {v}" for n, v in zip(names, values, strict=True)),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _record_durations(model: str, seconds: list[float]) -> None:
    """An estimate must never fail the batch (nor be retried with it)."""
    try:
        store().record_durations(model, seconds)
    except Exception:
        logger.warning("Could not record a job's duration", extra={"model": model})
