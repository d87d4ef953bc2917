"""The job store against the emulated DynamoDB: conditional transitions, counters, races."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import pytest

from shared.errors import InvalidTransition
from shared.job_store import JobNotRunning, store
from shared.models import GenerateRequest, Job, JobStatus, utcnow


@pytest.fixture
def new_job(emulator):
    def make(status: JobStatus = JobStatus.PENDING) -> Job:
        now = utcnow()
        job = Job(
            job_id=str(uuid.uuid4()),
            status=JobStatus.PENDING,
            request=GenerateRequest(prompt="store test"),
            created_at=now,
            updated_at=now,
        )
        store().create(job)
        if status != JobStatus.PENDING:
            store().transition(job.job_id, JobStatus.PROCESSING)
        if status.terminal:
            store().transition(job.job_id, status)
        return store().get(job.job_id)

    return make


def test_a_completed_job_never_becomes_processing_again(new_job):
    job = new_job(JobStatus.COMPLETED)
    with pytest.raises(InvalidTransition):
        store().transition(job.job_id, JobStatus.PROCESSING)
    assert store().get(job.job_id).status == JobStatus.COMPLETED


def test_a_stale_attempt_cannot_change_the_job(new_job):
    job = new_job(JobStatus.FAILED)
    store().transition(job.job_id, JobStatus.PENDING, change=lambda j: setattr(j, "attempt", 2))
    with pytest.raises(InvalidTransition):
        store().transition(job.job_id, JobStatus.PROCESSING, attempt=1)


@pytest.mark.parametrize("end", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_an_ended_attempt_keeps_no_callback_token(new_job, end):
    """The token is of no use once the attempt ended; kept, every later write would pay for it."""
    job = new_job(JobStatus.PROCESSING)
    store().update_running(job, {"task_token": "t" * 900})
    store().transition(job.job_id, end)
    assert store().get(job.job_id).task_token is None


def test_progress_of_a_cancelled_job_is_refused(new_job):
    job = new_job(JobStatus.PROCESSING)
    store().set_progress(job, 40)
    store().transition(job.job_id, JobStatus.CANCELLED)
    with pytest.raises(JobNotRunning):
        store().set_progress(job, 50)
    assert store().get(job.job_id).progress == 40


def race(job_id: str) -> dict[str, str]:
    """Cancel and complete one processing job at the same instant, while a progress write bumps
    its version: returns who won."""
    results: dict[str, str] = {}
    barrier = threading.Barrier(3)

    def change(target: JobStatus) -> None:
        barrier.wait()
        try:
            store().transition(job_id, target)
            results[target.value] = "won"
        except InvalidTransition:
            results[target.value] = "lost"

    job = store().get(job_id)

    def progress() -> None:
        barrier.wait()
        with contextlib.suppress(JobNotRunning):  # the job already ended: what a late write is told
            store().set_progress(job, 70)

    threads = [threading.Thread(target=change, args=(s,)) for s in (JobStatus.CANCELLED, JobStatus.COMPLETED)]
    threads.append(threading.Thread(target=progress))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_cancel_and_complete_exactly_one_wins(new_job):
    for _ in range(20):
        job = new_job(JobStatus.PROCESSING)
        results = race(job.job_id)
        assert sorted(results.values()) == ["lost", "won"]
        final = store().get(job.job_id)
        winner = next(status for status, result in results.items() if result == "won")
        assert final.status == winner
        assert len(final.attempts) == 1


def test_counters_match_the_jobs_after_concurrent_changes(new_job, emulator):
    emulator.counters.settle()
    before = store().stats()
    jobs = [new_job() for _ in range(6)]

    def run(job: Job) -> None:
        store().transition(job.job_id, JobStatus.PROCESSING)
        store().transition(job.job_id, JobStatus.COMPLETED if int(job.job_id[0], 16) % 2 else JobStatus.FAILED)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emulator.counters.settle()
    after = store().stats()
    finished = {s: sum(store().get(j.job_id).status == s for j in jobs) for s in ("completed", "failed")}
    assert after["submitted"] - before["submitted"] == 6
    assert after["completed"] - before["completed"] == finished["completed"]
    assert after["failed"] - before["failed"] == finished["failed"]
    assert after["processing"] == before["processing"] and after["pending"] == before["pending"]


def test_list_reads_a_page_not_the_table(new_job, emulator):
    # 25 jobs; a page of 3 is one Query (Limit 3) and one BatchGetItem of 3 keys.
    for _ in range(25):
        new_job()
    calls: list[tuple[str, dict]] = []
    from shared.aws import client

    dynamodb = client("dynamodb")

    here = threading.get_ident()  # not the stream's counters, which share the client

    def record(params, model, **_):
        if threading.get_ident() == here:
            calls.append((model.name, params))

    dynamodb.meta.events.register("provide-client-params.dynamodb.*", record)
    try:
        page, cursor = store().list_jobs(status=JobStatus.PENDING, limit=3)
    finally:
        dynamodb.meta.events.unregister("provide-client-params.dynamodb.*", record)
    assert len(page) == 3 and cursor
    assert [name for name, _ in calls] == ["Query", "BatchGetItem"]
    assert calls[0][1]["Limit"] == 3
    assert "Scan" not in [name for name, _ in calls]


def test_stats_follow_the_table_when_jobs_expire(emulator):
    """Issue 7.6: the counters follow the jobs in the table. A job whose TTL expires is deleted
    by DynamoDB (a REMOVE on the table's stream, as any deletion), and leaves the counters: an
    owner's stats then equal a full listing of its jobs."""
    from shared.aws import client

    owner = f"expiry-{uuid.uuid4().hex[:8]}"
    made = []
    for status in (JobStatus.COMPLETED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING):
        now = utcnow()
        job = Job(
            job_id=str(uuid.uuid4()),
            status=JobStatus.PENDING,
            owner=owner,
            request=GenerateRequest(prompt="expiry"),
            created_at=now,
            updated_at=now,
        )
        store().create(job)
        if status in (JobStatus.COMPLETED, JobStatus.FAILED):
            store().transition(job.job_id, JobStatus.PROCESSING, change=lambda j: setattr(j, "started_at", utcnow()))
            time.sleep(0.01)
        if status.terminal:
            store().transition(job.job_id, status)
        made.append(store().get(job.job_id))

    def listed() -> dict[str, int]:
        jobs, cursor = store().list_jobs(owner=owner, limit=100)
        assert cursor is None
        counts = {s.value: sum(j.status == s for j in jobs) for s in JobStatus}
        return counts | {"submitted": len(jobs)}

    counted = [*(s.value for s in JobStatus), "submitted"]
    emulator.counters.settle()
    stats = store().stats(owner)
    assert {k: stats[k] for k in counted} == listed()
    assert listed() == {"pending": 1, "processing": 0, "completed": 2, "failed": 1, "cancelled": 1, "submitted": 5}
    # The sums of the jobs' usage (their AWS cost) follow the jobs too.
    assert stats["usage_write_units"] == sum(j.usage.write_units for j in made)
    expired = made[0]
    assert expired.expires_at  # a finished job carries its TTL
    client("dynamodb").delete_item(TableName=store().table, Key={"pk": {"S": expired.job_id}})  # what TTL does
    emulator.counters.settle()
    after = store().stats(owner)
    assert {k: after[k] for k in counted} == listed()
    assert after["completed"] == 1 and after["submitted"] == 4
    lasted = int((expired.finished_at - expired.started_at).total_seconds() * 1000)
    assert lasted > 0 and after["duration_ms"] == stats["duration_ms"] - lasted
    assert after["usage_write_units"] == stats["usage_write_units"] - expired.usage.write_units
    assert after["metric_total_count"] == stats["metric_total_count"] - 1


@pytest.mark.parametrize("key", ["signing#deployment", "apikey#0123abcd", "stats#completed#0"])
def test_another_items_key_is_no_job_and_is_never_read(key, monkeypatch):
    """Deployed, IAM refuses the functions' reads of signing secrets and API keys: asking for one
    as a job must be a 404 (JobNotFound), not a read that fails with AccessDenied (a 500)."""
    from botocore.exceptions import ClientError

    from shared import job_store
    from shared.job_store import JobNotFound

    class DeniedTable:
        def get_item(self, **_):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "GetItem")

    monkeypatch.setattr(job_store, "client", lambda service: DeniedTable())
    with pytest.raises(JobNotFound):
        store().get(key)
