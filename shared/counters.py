"""The stats counters, kept from the jobs table's stream (functions/counters), out of the jobs' own
writes: a job's status change is then one conditional write, not a transaction with counters.

Every change of a job item reaches the stream with the item before and after. A batch of changes
is summed into deltas per counter item and applied in one transaction:
- `stats#N` (one of the job store's COUNTER_SHARDS, by batch): jobs per status, `submitted` (jobs
  in the table), the sums of their usage (`usage_*`, as each job's grows) and, over completed
  jobs, of their duration (`duration_ms`), timings (`metric_*_ms` and `_count`) and provider
  charges (`provider_nusd`, nano-dollars), read by operators' stats;
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
from typing import Any

from shared.aws import client
from shared.job_store import (
    COUNTER_PREFIX,
    COUNTER_SHARDS,
    ENTITY,
    JOB_ENTITY,
    OWNER_COUNTER_PREFIX,
    USAGE_PREFIX,
    job_of,
    store,
)
from shared.jobs import model_key
from shared.models import Job, JobStatus
from shared.observability import logger
from shared.schemas import JobCost, JobMetrics
from shared.usage import Usage

MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems


def apply(records: list[dict[str, Any]]) -> dict[str, int]:
    """Apply one batch of stream records. Returns how many job changes it counted."""
    if not records:
        return {"changes": 0, "counters": 0}
    deltas: dict[str, Counter] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
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
        owner = (new or old).owner
        deltas[total].update(delta)
        deltas[OWNER_COUNTER_PREFIX + owner].update(delta)
        if new and _completed(new) and not (old and _completed(old)) and delta["duration_ms"]:
            durations[model_key(new)].append(delta["duration_ms"] / 1000)
    writes = {key: Counter({k: v for k, v in d.items() if v}) for key, d in deltas.items()}
    _write({key: d for key, d in writes.items() if d}, token)
    for model, seconds in durations.items():
        _record_durations(model, seconds)
    return {"changes": counted, "counters": len(writes)}


def _job(image: dict[str, Any] | None) -> Job | None:
    if not image or image.get(ENTITY, {}).get("S") != JOB_ENTITY:
        return None
    return job_of(store().plain(image))


def _completed(job: Job) -> bool:
    return job.status == JobStatus.COMPLETED


def _delta(old: Job | None, new: Job | None) -> Counter:
    """What one change of a job adds to its counters: its usage grows at most writes; the rest
    moves only with its status (or its deletion)."""
    delta: Counter = Counter()
    for name in Usage.model_fields:
        delta[USAGE_PREFIX + name] = _usage(new, name) - _usage(old, name)
    if old and new and old.status == new.status:
        return delta  # progress, prediction id, ...: no status change
    for job, sign in ((old, -1), (new, 1)):
        if job is None:
            continue
        delta[job.status.value] += sign
        delta["submitted"] += sign if (old is None or new is None) else 0
        if _completed(job):
            for name, value in _completed_sums(job).items():
                delta[name] += sign * value
    return delta


def _usage(job: Job | None, name: str) -> float:
    return getattr(job.usage, name) if job else 0


def _completed_sums(job: Job) -> dict[str, int]:
    """What a completed job adds to the sums of its counters: its duration (ms), each of its
    timings (ms, and a count: a timing may be unknown) and the provider's charge (nano-USD)."""
    lasted = (job.finished_at - job.started_at).total_seconds() if job.started_at and job.finished_at else 0
    sums = {"duration_ms": int(lasted * 1000)}
    for name, seconds in JobMetrics.of(job).model_dump().items():
        if seconds is not None:
            key = name.removesuffix("_seconds")
            sums[f"metric_{key}_ms"] = _ms(seconds)
            sums[f"metric_{key}_count"] = 1
    cost = JobCost.of(job).provider
    if cost and cost.usd:
        sums["provider_nusd"] = round(cost.usd * 1e9)
    return sums


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


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
    values = {f":c{i}": {"N": _number(v)} for i, v in enumerate(delta.values())}
    return {
        "TableName": store().table,
        "Key": {"pk": {"S": key}},
        "UpdateExpression": "ADD " + ", ".join(f"{n} {v}" for n, v in zip(names, values, strict=True)),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else format(round(value, 6), "f")


def _record_durations(model: str, seconds: list[float]) -> None:
    """An estimate must never fail the batch (nor be retried with it)."""
    try:
        store().record_durations(model, seconds)
    except Exception:
        logger.warning("Could not record a job's duration", extra={"model": model})
