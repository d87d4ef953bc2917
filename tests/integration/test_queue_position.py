"""Queue position and ETA of pending jobs, checked against a real queue drained at a known rate,
and the timings every job's detail reports."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from infra import spec
from shared.aws import client
from tests.conftest import status_of, submit, wait_for, wait_until_done

RATE = 1.0  # jobs dispatched per second
JOBS = 30


@pytest.fixture
def dispatch_rate(configure, emulator):
    """Dispatch at RATE per second, all dispatchers together (each paces itself to its share)."""

    def forget_pacers() -> None:  # warm dispatchers keep their pace: start afresh at the new rate
        with emulator.dispatch_paused():
            for module in emulator.runtime.warm_modules("dispatcher"):
                module._pacer = None

    original = os.environ.get("DISPATCH_RATE_PER_SECOND", "8")
    configure(DISPATCH_RATE_PER_SECOND=str(RATE))
    forget_pacers()
    yield
    configure(DISPATCH_RATE_PER_SECOND=original)
    forget_pacers()


def queue_is_empty(emulator) -> bool:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=emulator.resources.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(value == "0" for value in attributes.values())


def test_positions_count_down_and_etas_track_the_measured_wait(api, emulator, dispatch_rate):
    # Given an empty queue (a job dispatched last, so nothing is left ahead)
    wait_until_done(api, submit(api, width=64, height=64))
    wait_for(lambda: queue_is_empty(emulator), timeout=30, what="an empty queue")

    # When 30 jobs are queued while dispatch is paused
    with emulator.dispatch_paused():
        job_ids = [submit(api, width=64, height=64) for _ in range(JOBS)]
        first = {job_id: status_of(api, job_id) for job_id in job_ids}
    # Then they stand at 0..29, each with an ETA to start and to finish
    assert [first[j]["queue_position"] for j in job_ids] == list(range(JOBS))
    for job_id in job_ids:
        eta = first[job_id]["eta_seconds"]
        assert eta["start"] > 0 and eta["finish"] > eta["start"]

    # And, as the queue drains at RATE, each position only falls until the job starts, and the ETA
    # read when dispatch resumed is within 50% of the wait measured from then
    resumed = datetime.now(UTC)
    predicted = {j: first[j]["eta_seconds"]["start"] for j in job_ids}
    positions: dict[str, list[int]] = {j: [first[j]["queue_position"]] for j in job_ids}
    waiting = set(job_ids)
    deadline = time.monotonic() + JOBS / RATE * 2 + 20
    while waiting and time.monotonic() < deadline:
        for job_id in sorted(waiting):
            status = status_of(api, job_id)
            if status["status"] == "pending":
                positions[job_id].append(status["queue_position"])
            else:
                waiting.discard(job_id)
        time.sleep(0.5)
    assert not waiting, "every job left the queue"
    estimates = []
    for job_id in job_ids:
        seen = positions[job_id]
        assert seen == sorted(seen, reverse=True), f"position rose: {seen}"
        job = wait_until_done(api, job_id)
        assert job["status"] == "completed"
        # The wait the ETA predicts: until the job's workflow started (the job left the queue).
        measured = (datetime.fromisoformat(job["started_at"]) - resumed).total_seconds()
        eta = predicted[job_id]
        estimates.append((eta, round(measured, 2)))
    # Slack besides the 50%, for the first jobs: the dispatchers start side by side, each at its
    # share of the rate, so neighbours in the queue start up to QUEUE_MAX_CONCURRENCY / RATE apart;
    # and a standard queue delivers only roughly in order (neighbours swap): one place more.
    slack = (spec.QUEUE.max_concurrency + 1) / RATE
    for eta, measured in estimates:
        assert abs(eta - measured) <= max(0.5 * measured, slack), estimates


def test_not_pending_jobs_show_no_position(api):
    job = wait_until_done(api, submit(api, width=64, height=64))
    assert job["queue_position"] is None and job["eta_seconds"] is None
    assert status_of(api, job["job_id"])["queue_position"] is None


def test_every_job_reports_where_its_time_went(api):
    # Given a completed job
    job = wait_until_done(api, submit(api, width=64, height=64))
    metrics = job["metrics"]
    # Then each step has a duration, and they add up within the total
    for name in ("queue_wait_seconds", "time_to_start_seconds", "predict_seconds", "output_copy_seconds"):
        assert metrics[name] is not None and metrics[name] >= 0, name
    assert metrics["queue_wait_seconds"] <= metrics["time_to_start_seconds"] <= metrics["total_seconds"]
    assert metrics["predict_seconds"] + metrics["output_copy_seconds"] <= metrics["total_seconds"]
    assert metrics["predict_seconds"] >= 0.4  # MOCK_GENERATION_SECONDS is 0.5 in the tests


def test_a_retry_is_queued_again_with_fresh_timings(api, emulator):
    with emulator.dispatch_paused():
        job_id = submit(api)
        api.post(f"/api/v1/jobs/{job_id}/cancel")
        first = api.get(f"/api/v1/jobs/{job_id}").json()
        response = api.post(f"/api/v1/jobs/{job_id}/retry")
        assert response.status_code == 202
        retried = status_of(api, job_id)
        assert retried["queue_position"] is not None
    job = wait_until_done(api, job_id)
    assert job["status"] == "completed" and job["attempt"] == 2
    assert first["metrics"]["predict_seconds"] is None
    assert job["metrics"]["predict_seconds"] is not None
