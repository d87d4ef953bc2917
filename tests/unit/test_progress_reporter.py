"""The worker's progress writes: rising only, and at most one per PROGRESS_MIN_INTERVAL counted
from the reporter's start, so a step that ends within it (a fast output copy) writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared import attempt
from shared.models import GenerateRequest, Job, JobStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reporter(monkeypatch):
    writes: list[int] = []

    class Store:
        def set_progress(self, job: Job, value: int) -> None:
            writes.append(value)

    clock = Clock()
    monkeypatch.setattr(attempt, "store", lambda: Store())
    monkeypatch.setattr(attempt.notify, "job_changed", lambda *args, **kwargs: None)
    monkeypatch.setattr(attempt.time, "monotonic", clock)
    now = datetime.now(UTC)
    job = Job(
        job_id="j", status=JobStatus.PROCESSING, request=GenerateRequest(prompt="p"), created_at=now, updated_at=now
    )
    return attempt.ProgressReporter(job, None), clock, writes


def test_a_step_that_ends_within_the_interval_writes_nothing(reporter):
    report, clock, writes = reporter
    report(95)
    clock.now += attempt.PROGRESS_MIN_INTERVAL / 2
    report(99)  # 99 too: the completion that follows sets 100
    assert writes == []


def test_longer_work_writes_rising_progress_at_most_once_per_interval(reporter):
    report, clock, writes = reporter
    for value in range(10, 90, 10):
        clock.now += attempt.PROGRESS_MIN_INTERVAL / 2
        report(value)
    report(50)  # never lower
    assert writes == [20, 40, 60, 80]
