"""The jobs table: the only code that talks to DynamoDB.

Layout (one table; infra/spec.py builds the table and its indexes from the names below):
- a job is one item, key `pk` = job id, with a `version` bumped by every write;
- `by-status` index (status, created_at) lists a status newest first; `by-created` index
  (entity, created_at) lists every job. Both are KEYS_ONLY so progress updates never write to
  them; a page is one Query plus one BatchGetItem, whatever the table's size;
- `COUNTER_SHARDS` counter items (`pk` = "stats#N") hold the number of jobs in each status, so
  stats read a fixed number of items; they are kept from the table's stream (shared/counters.py),
  seconds behind the jobs, not by the jobs' own writes;
- `by-owner` (owner, created_at) and `by-owner-status` (owner_status = "<owner>#<status>",
  created_at) list one caller's jobs, also one Query per page; a counter item per owner
  (`pk` = "owner#<owner>") holds that owner's jobs per status (from the stream too) and its
  `active` (pending or processing) count, which the job's own transactions keep exactly: that is
  where a key's quota is enforced, with a submit counter per minute (`pk` = "rate#<owner>#<minute>",
  read as a sliding window: shared/submit_rate.py);
- the queue item (`pk` = "queue") holds the last submit sequence number handed out and the
  highest one dispatched, so a pending job's queue position is one read however long the queue;
- a timing item per model (`pk` = "timing#<model>") holds a moving average of how long its jobs
  take, for the ETA of a queued job.

Every status change is a conditional write on the version read just before it (optimistic
locking): a concurrent write makes it re-read and re-check the transition, so no update is lost
and a job never steps backwards. Only a change of the owner's active count (create, a retry, the
end of an active job) makes it a transaction with the owner's counter item.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import cache
from typing import Any

from shared import notify, submit_rate
from shared.aws import client, error_code
from shared.errors import (
    ActiveJobsLimit,
    InvalidCursor,
    InvalidTransition,
    JobNotFound,
    ServiceError,
    SubmitRateLimited,
)
from shared.models import TRANSITIONS, Attempt, Job, JobStatus, to_iso, utcnow
from shared.settings import get_settings
from shared.usage import Usage, item_size, meter, write_units

# Table layout: the contract with infra/spec.py.
PK = "pk"
STATUS = "status"
CREATED_AT = "created_at"
ENTITY = "entity"
TTL_ATTRIBUTE = "expires_at"
STATUS_INDEX = "by-status"
CREATED_INDEX = "by-created"
OWNER = "owner"
OWNER_STATUS = "owner_status"
OWNER_INDEX = "by-owner"
OWNER_STATUS_INDEX = "by-owner-status"
OWNER_COUNTER_PREFIX = "owner#"
RATE_PREFIX = "rate#"
ACTIVE = {JobStatus.PENDING, JobStatus.PROCESSING}
JOB_ENTITY = "job"
COUNTER_SHARDS = 8
COUNTER_PREFIX = "stats#"
# A job's usage (shared/usage.py) is stored as top-level numbers, so any write can ADD to them.
USAGE_PREFIX = "usage_"
# The keys of the four indexes (all KEYS_ONLY): a write that adds, moves or drops an entry pays for it.
INDEX_KEYS = ((STATUS, CREATED_AT), (ENTITY, CREATED_AT), (OWNER, CREATED_AT), (OWNER_STATUS, CREATED_AT))
QUEUE_KEY = "queue"
TIMING_PREFIX = "timing#"
# Weight of the newest duration in a model's moving average: recent jobs count most.
TIMING_WEIGHT = 0.2

_MAX_WRITE_TRIES = 6
# The submit limit's clock (a name of its own so a test can move it across a minute's end).
clock = time.time


class JobNotRunning(Exception):
    """A progress update found the job no longer running this attempt (cancelled, failed, retried)."""


class StoreBusy(ServiceError):
    status_code = 503
    code = "BUSY"


class _AttributeSerializer:
    """Python to DynamoDB's attribute values, as boto3's TypeSerializer makes them for the types
    stored here (no sets, no binary). boto3's own would import boto3 (and s3transfer) at every
    cold start for it; Powertools ships the deserializer alone."""

    def serialize(self, value: Any) -> dict[str, Any]:
        from aws_lambda_powertools.shared.dynamodb_deserializer import DYNAMODB_CONTEXT

        if value is None:
            return {"NULL": True}
        if isinstance(value, bool):
            return {"BOOL": value}
        if isinstance(value, int | Decimal):
            # DynamoDB's range and precision: out of it is an error, never a rounded number.
            number = str(DYNAMODB_CONTEXT.create_decimal(value))
            if number in ("Infinity", "-Infinity", "NaN", "sNaN"):
                raise TypeError(f"{number} is not a DynamoDB number")
            return {"N": number}
        if isinstance(value, str):
            return {"S": value}
        if isinstance(value, dict):
            return {"M": {k: self.serialize(v) for k, v in value.items()}}
        if isinstance(value, list | tuple):
            return {"L": [self.serialize(v) for v in value]}
        raise TypeError(f"Unsupported type {type(value).__name__} for a DynamoDB attribute")


def _serializer():
    from aws_lambda_powertools.shared.dynamodb_deserializer import TypeDeserializer

    return _AttributeSerializer(), TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    """Plain Python to what the serializer accepts (Decimal, not float; ISO strings for dates)."""
    if hasattr(value, "isoformat"):
        return to_iso(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


class JobStore:
    def __init__(self) -> None:
        self._ser, self._deser = _serializer()

    @property
    def table(self) -> str:
        return get_settings().jobs_table_name

    # ---- (de)serialization -------------------------------------------------------------------
    def _marshal(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(v) for k, v in _to_dynamo(item).items()}

    def _unmarshal(self, item: dict[str, Any]) -> dict[str, Any]:
        return _from_dynamo({k: self._deser.deserialize(v) for k, v in item.items()})

    def plain(self, item: dict[str, Any]) -> dict[str, Any]:
        """An item in DynamoDB JSON (a stream record's image, say) as plain Python values."""
        return self._unmarshal(item)

    def _job_item(self, job: Job) -> dict[str, Any]:
        # The id is the key (pk): not stored twice, as each write pays for the item's bytes.
        item = job.model_dump(mode="python", exclude={"job_id", "usage"})
        # Only what the client sent: a reloaded request still knows which parameters were chosen
        # (and so which a model must honour) and which are defaults.
        item["request"] = job.request.model_dump(mode="python", exclude_unset=True)
        item[PK] = job.job_id
        item[ENTITY] = JOB_ENTITY
        item[OWNER_STATUS] = f"{job.owner}#{job.status.value}"
        item |= {USAGE_PREFIX + name: value for name, value in job.usage.rounded() if value}
        return self._marshal(item)

    def _job(self, item: dict[str, Any]) -> Job:
        return _job_of(self._unmarshal(item))

    # ---- reads -------------------------------------------------------------------------------
    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; JobNotFound too when `owner` is given and is not its owner (ids are not probeable)."""
        if "#" in job_id:
            # Another kind of item's key (counters, API keys, signing secrets): never a job, and
            # deployed, the functions may not even read some of them (an AccessDenied, a 500).
            raise JobNotFound(job_id)
        response = client("dynamodb").get_item(TableName=self.table, Key={PK: {"S": job_id}}, ConsistentRead=True)
        item = response.get("Item")
        if not item or item.get(ENTITY, {}).get("S") != JOB_ENTITY:  # counters are not jobs
            raise JobNotFound(job_id)
        job = self._job(item)
        if owner is not None and job.owner != owner:
            raise JobNotFound(job_id)
        return job

    def list_jobs(
        self, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None, owner: str | None = None
    ) -> tuple[list[Job], str | None]:
        """One page, newest first (only `owner`'s jobs if given). The cursor is opaque to clients:
        the index position, encoded."""
        if owner is not None and status:
            index, key_condition = OWNER_STATUS_INDEX, {OWNER_STATUS: f"{owner}#{status.value}"}
        elif owner is not None:
            index, key_condition = OWNER_INDEX, {OWNER: owner}
        elif status:
            index, key_condition = STATUS_INDEX, {STATUS: status.value}
        else:
            index, key_condition = CREATED_INDEX, {ENTITY: JOB_ENTITY}
        [(hash_name, hash_value)] = key_condition.items()
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "#h = :h",
            "ExpressionAttributeNames": {"#h": hash_name},
            "ExpressionAttributeValues": {":h": {"S": hash_value}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = _decode_cursor(cursor, hash_name, hash_value)
        response = client("dynamodb").query(**query)
        ids = [item[PK]["S"] for item in response.get("Items", [])]
        jobs = self._batch_get(ids)
        if status:  # the index is eventually consistent: drop jobs that moved on since
            jobs = [job for job in jobs if job.status == status]
        return jobs, _encode_cursor(response.get("LastEvaluatedKey"))

    def _batch_get(self, ids: list[str]) -> list[Job]:
        items = self._batch_get_items(ids)
        found = {item[PK]: item for item in items}
        return [_job_of(found[i]) for i in ids if i in found]

    def _batch_get_items(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        keys = [{PK: {"S": i}} for i in dict.fromkeys(ids)]
        items: list[dict[str, Any]] = []
        for delay in _backoff():
            if not keys:
                return items
            response = client("dynamodb").batch_get_item(RequestItems={self.table: {"Keys": keys}})
            items += [self._unmarshal(i) for i in response.get("Responses", {}).get(self.table, [])]
            keys = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
            if keys:
                time.sleep(delay)
        raise StoreBusy("The jobs table is busy; try again")

    def stats(self, owner: str | None = None) -> dict[str, float]:
        """The counters (shared/counters.py: jobs per status, `submitted`, `duration_ms`, usage,
        cost and metrics sums), summed over the counter shards, or read from `owner`'s item."""
        totals: dict[str, float] = dict.fromkeys([s.value for s in JobStatus] + ["submitted", "duration_ms"], 0)
        keys = (
            [OWNER_COUNTER_PREFIX + owner]
            if owner is not None
            else [f"{COUNTER_PREFIX}{n}" for n in range(COUNTER_SHARDS)]
        )
        for item in self._batch_get_items(keys):
            for name, value in item.items():
                if name not in (PK, "active") and isinstance(value, int | float):
                    totals[name] = totals.get(name, 0) + value
        return totals

    def queue_state(self, model_key: str) -> tuple[int, float | None]:
        """The highest submit sequence number dispatched so far, and the model's mean duration in
        seconds (None before any job of it completed). One BatchGetItem of two small items."""
        items = {i[PK]: i for i in self._batch_get_items([QUEUE_KEY, TIMING_PREFIX + model_key])}
        dispatched = int(items.get(QUEUE_KEY, {}).get("dispatched_seq", 0))
        mean = items.get(TIMING_PREFIX + model_key, {}).get("mean_seconds")
        return dispatched, (float(mean) if mean is not None else None)

    # ---- writes ------------------------------------------------------------------------------
    def next_queue_seq(self) -> int:
        """The next submit sequence number (1, 2, ...): a job's place in dispatch order."""
        meter().add(write_units=1)
        response = client("dynamodb").update_item(
            TableName=self.table,
            Key={PK: {"S": QUEUE_KEY}},
            UpdateExpression="ADD submitted_seq :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["submitted_seq"]["N"])

    def set_queue_seq(self, job: Job) -> None:
        """Record a new job's place in dispatch order (taken only once the job was admitted, so a
        refused submit leaves no gap in the sequence). Nothing if it already left the queue."""
        taken = meter().take() + Usage(write_units=write_units(item_size(self._job_item(job))))
        added = {USAGE_PREFIX + name: value for name, value in taken.rounded() if value}
        names = {f"#u{i}": name for i, name in enumerate(added)}
        values = self._marshal({f":u{i}": v for i, v in enumerate(added.values())})
        try:
            client("dynamodb").update_item(
                TableName=self.table,
                Key={PK: {"S": job.job_id}},
                UpdateExpression="SET queue_seq = :seq ADD version :one"
                + "".join(f", #u{i} :u{i}" for i in range(len(added))),
                ConditionExpression="#s = :pending AND attempt = :a",
                ExpressionAttributeNames=names | {"#s": STATUS},
                ExpressionAttributeValues=values
                | {
                    ":seq": {"N": str(job.queue_seq)},
                    ":one": {"N": "1"},
                    ":pending": {"S": JobStatus.PENDING.value},
                    ":a": {"N": str(job.attempt)},
                },
            )
        except Exception as exc:
            meter().give_back(taken)
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        else:
            job.version += 1

    def mark_dispatched(self, seq: int) -> None:
        """Record that the queue got as far as `seq`. Only ever rises, so a duplicate or late
        delivery changes nothing."""
        try:
            client("dynamodb").update_item(
                TableName=self.table,
                Key={PK: {"S": QUEUE_KEY}},
                UpdateExpression="SET dispatched_seq = :s",
                ConditionExpression="attribute_not_exists(dispatched_seq) OR dispatched_seq < :s",
                ExpressionAttributeValues={":s": {"N": str(seq)}},
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def record_durations(self, model_key: str, durations: list[float]) -> None:
        """Fold jobs' durations, in order, into their model's moving average: one read and one
        write (an estimate: a write that loses a race is dropped rather than retried)."""
        key = {PK: {"S": TIMING_PREFIX + model_key}}
        item = client("dynamodb").get_item(TableName=self.table, Key=key).get("Item")
        mean = float(item["mean_seconds"]["N"]) if item else durations[0]
        for seconds in durations if item else durations[1:]:
            mean += TIMING_WEIGHT * (seconds - mean)
        if item:
            condition, values = "mean_seconds = :old", {":old": item["mean_seconds"]}
        else:
            condition, values = "attribute_not_exists(mean_seconds)", {}
        try:
            client("dynamodb").update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET mean_seconds = :mean",
                ConditionExpression=condition,
                ExpressionAttributeValues=values | {":mean": {"N": str(round(mean, 3))}},
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def create(self, job: Job, max_active: int | None = None, max_per_minute: int | None = None) -> Job:
        """Store a new job. With limits (an API key's quota), the owner's active-job count and this
        minute's submit count (against what the previous minute's leaves: shared/submit_rate.py)
        are checked and raised in the same transaction: nothing is stored over either
        (ActiveJobsLimit, SubmitRateLimited), however many submits race."""
        # This transaction's own units go on the job with what the request metered so far: the job
        # and the owner's counter (and this minute's submit count) at 2 units each, and the job's
        # index entries. A refused create stores nothing, and its usage is no job's.
        job.usage = job.usage + meter().take()
        item = self._job_item(job)
        counters = 1 if max_per_minute is None else 2
        units = write_units(item_size(item), transactional=True) + 2 * counters + _index_writes(None, item)
        job.usage = job.usage + Usage(write_units=units)
        put = {
            "TableName": self.table,
            "Item": self._job_item(job),
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": PK},
        }
        extra, now, previous = [], clock(), 0
        if max_per_minute is not None:
            minute = submit_rate.minute_of(now)
            previous = self._submits_in_minute(job.owner, minute - 1)
            allowed = submit_rate.allowed_this_minute(max_per_minute, previous, now)
            # Refused outright: the condition below passes when this minute has no counter yet. This
            # minute's count is not read, so Retry-After is the soonest a place could come back.
            if allowed == 0:
                wait = submit_rate.seconds_until_allowed(max_per_minute, previous, 0, now)
                raise SubmitRateLimited(max_per_minute, wait)
            extra.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {PK: {"S": f"{RATE_PREFIX}{job.owner}#{minute}"}},
                        "UpdateExpression": "ADD submits :one SET #ttl = :ttl",
                        "ConditionExpression": "attribute_not_exists(submits) OR submits < :allowed",
                        "ExpressionAttributeNames": {"#ttl": TTL_ATTRIBUTE},
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":allowed": {"N": str(allowed)},
                            ":ttl": {"N": str((minute + 2) * 60)},
                        },
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
        try:
            self._transact(put, self._quota(None, job, max_active), *extra)
        except Exception as exc:
            failed = _failed_items(exc)
            if 1 in failed and max_active is not None:
                raise ActiveJobsLimit(max_active) from None
            if 2 in failed and max_per_minute is not None:
                current = int(_failed_item(exc, 2).get("submits", {}).get("N", max_per_minute))
                wait = submit_rate.seconds_until_allowed(max_per_minute, previous, current, now)
                raise SubmitRateLimited(max_per_minute, wait) from None
            raise
        return job

    def _submits_in_minute(self, owner: str, minute: int) -> int:
        """A key owner's submits counted in a closed minute (an eventually consistent read is enough:
        nothing adds to it any more)."""
        key = {PK: {"S": f"{RATE_PREFIX}{owner}#{minute}"}}
        response = client("dynamodb").get_item(TableName=self.table, Key=key, ProjectionExpression="submits")
        return int(response.get("Item", {}).get("submits", {}).get("N", 0))

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        attempt: int | None = None,
        change: Callable[[Job], None] | None = None,
        owner: str | None = None,
        max_active: int | None = None,
    ) -> Job:
        """Move a job to `to` if that is allowed from its current status (and still `attempt`).

        `change` sets the other fields of the new version (outputs, error, ...). Raises
        InvalidTransition when the job is in a status that cannot become `to`, JobNotFound when
        `owner` is given and is not the job's. The owner's active count moves in the same
        transaction (a job that ends releases its quota, however it ends); with `max_active`, a
        job becoming active again (a retry) is refused over it (ActiveJobsLimit). A change that
        keeps the job active or ended (pending -> processing) is one conditional write.
        """
        taken = meter().take()
        try:
            return self._transition(job_id, to, taken, attempt, change, owner, max_active)
        except BaseException:
            meter().give_back(taken)  # no write carried it: the next one will
            raise

    def _transition(
        self,
        job_id: str,
        to: JobStatus,
        taken: Usage,
        attempt: int | None,
        change: Callable[[Job], None] | None,
        owner: str | None,
        max_active: int | None,
    ) -> Job:
        for delay in _backoff():
            current = self.get(job_id, owner)
            if attempt is not None and current.attempt != attempt:
                raise InvalidTransition(f"Job {job_id} has moved on to attempt {current.attempt}", current.status)
            if to not in TRANSITIONS[current.status]:
                raise InvalidTransition(f"Job {job_id} is {current.status.value}", current.status)
            new = _next_version(current, to)
            if change:
                change(new)
            if to.terminal:
                _close_attempt(new)
            quota = self._quota(current, new, max_active)
            new.usage = current.usage + taken
            old_item, new_item = self._job_item(current), self._job_item(new)
            units = write_units(max(item_size(old_item), item_size(new_item)), transactional=bool(quota))
            units += (2 if quota else 0) + _index_writes(old_item, new_item)
            new.usage = new.usage + Usage(write_units=units)
            try:
                if quota:
                    self._transact(self._replace(current, new), quota)
                else:
                    client("dynamodb").put_item(**self._replace(current, new))
                notify.job_changed(new)  # client webhooks: only once the write succeeded
                return new
            except Exception as exc:
                if max_active is not None and 1 in _failed_items(exc):
                    raise ActiveJobsLimit(max_active) from None
                if not _lost_race(exc):
                    raise
            time.sleep(delay)  # someone else wrote first: re-read and re-check the transition
        raise StoreBusy(f"Job {job_id} is changing too often; try again")

    def set_progress(self, job: Job, progress: int) -> None:
        """Raise a running attempt's progress (never lowers it). JobNotRunning if it stopped."""
        self.update_running(job, {"progress": progress}, only_if_higher="progress")

    def update_running(self, job: Job, fields: dict[str, Any], only_if_higher: str | None = None) -> None:
        """Set fields of `job` while its attempt is running (no status change, no counter).

        Raises JobNotRunning if the job is no longer processing that attempt (cancelled, failed,
        retried), which is how the worker learns to stop. With `only_if_higher`, a value that is
        not above the stored one is silently ignored (duplicate or late progress reports). Adds
        what the invocation metered, and this write's units (by `job`'s size), to its usage.
        """
        job_id, attempt = job.job_id, job.attempt
        taken = meter().take()
        taken = taken + Usage(write_units=write_units(item_size(self._job_item(job))))
        added = {USAGE_PREFIX + name: value for name, value in taken.rounded() if value}
        values = self._marshal({f":f{i}": v for i, v in enumerate(fields.values())})
        values |= self._marshal({f":u{i}": v for i, v in enumerate(added.values())})
        names = {f"#f{i}": name for i, name in enumerate(fields)} | {f"#u{i}": n for i, n in enumerate(added)}
        assignments = ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
        additions = "".join(f", #u{i} :u{i}" for i in range(len(added)))
        condition = "#s = :processing AND attempt = :a"
        if only_if_higher:
            index = list(fields).index(only_if_higher)
            condition += f" AND (attribute_not_exists(#f{index}) OR #f{index} < :f{index})"
        try:
            client("dynamodb").update_item(
                TableName=self.table,
                Key={PK: {"S": job_id}},
                UpdateExpression=f"SET {assignments}, updated_at = :now ADD version :one{additions}",
                ConditionExpression=condition,
                ExpressionAttributeNames=names | {"#s": STATUS},
                ExpressionAttributeValues=values
                | {
                    ":now": {"S": to_iso(utcnow())},
                    ":one": {"N": "1"},
                    ":processing": {"S": JobStatus.PROCESSING.value},
                    ":a": {"N": str(attempt)},
                },
            )
        except Exception as exc:
            meter().give_back(taken)
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            if only_if_higher and self._still_running(job_id, attempt):
                return
            raise JobNotRunning(job_id) from exc

    def _still_running(self, job_id: str, attempt: int) -> bool:
        job = self.get(job_id)
        return job.status == JobStatus.PROCESSING and job.attempt == attempt

    # ---- helpers -----------------------------------------------------------------------------
    def _replace(self, current: Job, new: Job) -> dict[str, Any]:
        return {
            "TableName": self.table,
            "Item": self._job_item(new),
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": {":v": {"N": str(current.version)}},
        }

    def _quota(self, current: Job | None, new: Job, max_active: int | None) -> dict[str, Any] | None:
        """The update of the owner's `active` count (its jobs pending or processing) that goes with a
        change, if it changes it: +1 (checked against `max_active`, if given) or -1."""
        was_active = current is not None and current.status in ACTIVE
        becomes_active = new.status in ACTIVE
        if was_active == becomes_active:
            return None
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": {PK: {"S": OWNER_COUNTER_PREFIX + new.owner}},
            "UpdateExpression": "ADD active :one",
            "ExpressionAttributeValues": {":one": {"N": "1" if becomes_active else "-1"}},
        }
        if becomes_active and max_active is not None:
            update["ConditionExpression"] = "attribute_not_exists(active) OR active < :max_active"
            update["ExpressionAttributeValues"][":max_active"] = {"N": str(max_active)}
        return update

    def _transact(self, put: dict[str, Any], *updates: dict[str, Any]) -> None:
        items = [{"Put": put}] + [u if "Update" in u else {"Update": u} for u in updates]
        client("dynamodb").transact_write_items(TransactItems=items)


def _index_writes(old: dict[str, Any] | None, new: dict[str, Any]) -> int:
    """Index entries a write adds, moves (2) or drops (KEYS_ONLY: nothing else is written)."""
    writes = 0
    for partition, sort in INDEX_KEYS:
        before = (old[partition], old[sort]) if old and partition in old and sort in old else None
        after = (new[partition], new[sort]) if partition in new and sort in new else None
        if before != after:
            writes += (before is not None) + (after is not None)
    return writes


def _next_version(current: Job, to: JobStatus) -> Job:
    new = current.model_copy(deep=True)
    now = utcnow()
    new.status, new.updated_at, new.version = to, now, current.version + 1
    if to.terminal:
        new.finished_at = now
        # The running attempt's bookkeeping (callback token, webhook nonce, the create's mark) is of
        # no use once it ended, and every later write (and the completion, the largest item) would
        # pay for its bytes: the token alone is up to 1 KB.
        new.task_token = new.webhook_nonce = new.prediction_requested_at = None
        new.expires_at = int(now.timestamp()) + get_settings().job_retention_days * 86_400
    return new


def _close_attempt(job: Job) -> None:
    """Terminal statuses end the current attempt: keep it in the job's history."""
    job.attempts.append(
        Attempt(
            attempt=job.attempt,
            status=job.status,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=job.error,
            prediction_id=job.prediction_id,
        )
    )


def job_of(item: dict[str, Any]) -> Job:
    """A job from its item, in plain values (a stream record's image, say: JobStore.plain)."""
    return _job_of(dict(item))


def _job_of(item: dict[str, Any]) -> Job:
    item.pop(OWNER_STATUS, None)  # an index key, derived from owner and status
    item.setdefault("job_id", item[PK])
    usage = {name[len(USAGE_PREFIX) :]: item.pop(name) for name in list(item) if name.startswith(USAGE_PREFIX)}
    return Job.model_validate(item | {"usage": usage})


def _failed_items(exc: Exception) -> set[int]:
    """The positions of a cancelled transaction's items whose condition failed."""
    if error_code(exc) != "TransactionCanceledException":
        return set()
    reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
    return {i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"}


def _failed_item(exc: Exception, position: int) -> dict[str, Any]:
    """The item as it was when a cancelled transaction's item at `position` failed its condition
    (asked for with ReturnValuesOnConditionCheckFailure), or {}."""
    reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
    return reasons[position].get("Item", {}) if position < len(reasons) else {}


def _lost_race(exc: Exception) -> bool:
    """A conditional write (or transaction) refused because the item changed since it was read."""
    if error_code(exc) == "ConditionalCheckFailedException":
        return True
    if error_code(exc) != "TransactionCanceledException":
        return False
    reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
    return not reasons or any(r in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons)


def _backoff() -> Iterable[float]:
    for n in range(_MAX_WRITE_TRIES):
        yield random.uniform(0, 0.05 * 2**n)


def _encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    plain = {name: value["S"] for name, value in key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, hash_name: str, hash_value: str) -> dict[str, Any]:
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise InvalidCursor() from exc
    expected = {PK, CREATED_AT, hash_name}
    if (
        not isinstance(plain, dict)
        or set(plain) != expected
        or not all(isinstance(v, str) for v in plain.values())
        or plain[hash_name] != hash_value
    ):
        raise InvalidCursor()
    return {name: {"S": value} for name, value in plain.items()}


@cache
def store() -> JobStore:
    """The jobs store of this container (created on first use, kept while warm)."""
    return JobStore()
