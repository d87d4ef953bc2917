"""Every sample event under events/ runs through its function here, so none can rot."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from local.invoke import seed_sample_job
from shared import deliveries, jobs
from shared.job_store import store
from shared.models import to_iso, utcnow
from shared.observability import logger
from tests.conftest import ROOT, executions_of, load_event, wait_for


def body(reply: dict) -> Any:
    return json.loads(reply["body"])


def fail_job(job_id: str) -> None:
    jobs.record_failure(job_id, 1, "PROVIDER_UNAVAILABLE", "test")


def run_generate(job_id: str) -> None:
    from functions.worker.app import handler
    from local.lambdas import LambdaContext

    event = load_event("worker/generate.json", job_id) | {"execution_started_at": to_iso(utcnow())}
    handler(event, LambdaContext("worker"))


def counted_once() -> dict[str, int]:
    return {
        "pending": 0,
        "processing": 1,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "submitted": 1,
        "duration_ms": 0,
    }


# event file -> (function, set-up for the job the event names, check of the reply)
CASES: dict[str, tuple[str, Callable[[str], None] | None, Callable[[dict, str, Any], None]]] = {
    "api/health.json": ("api", None, lambda r, j, e: r["statusCode"] == 200 or pytest.fail(r)),
    "authorizer/request-unknown-key.json": (
        "authorizer",
        None,
        lambda r, j, e: r == {"isAuthorized": True, "context": {"denied": "unknown"}} or pytest.fail(str(r)),
    ),
    "api/generate.json": ("api", None, lambda r, j, e: body(r)["status"] == "pending" or pytest.fail(r)),
    "api/generate-invalid.json": (
        "api",
        None,
        lambda r, j, e: (
            {x["field"] for x in body(r)["errors"]} == {"prompt", "parameters.width", "parameters.sampler"}
            or pytest.fail(r)
        ),
    ),
    "api/get-status.json": ("api", seed_sample_job, lambda r, j, e: body(r)["job_id"] == j or pytest.fail(r)),
    "api/get-job.json": ("api", seed_sample_job, lambda r, j, e: body(r)["request"]["prompt"] or pytest.fail(r)),
    "api/get-job-unknown.json": ("api", None, lambda r, j, e: r["statusCode"] == 404 or pytest.fail(r)),
    "api/list-jobs.json": ("api", seed_sample_job, lambda r, j, e: body(r)["jobs"] or pytest.fail(r)),
    "api/list-jobs-by-status.json": (
        "api",
        seed_sample_job,
        lambda r, j, e: {x["status"] for x in body(r)["jobs"]} == {"pending"} or pytest.fail(r),
    ),
    "api/cancel-job.json": ("api", seed_sample_job, lambda r, j, e: body(r)["status"] == "cancelled" or pytest.fail(r)),
    "api/retry-job.json": (
        "api",
        lambda j: (seed_sample_job(j), fail_job(j)),
        lambda r, j, e: (r["statusCode"], body(r)["links"]["self"]) == (202, f"/api/v1/jobs/{j}") or pytest.fail(r),
    ),
    "api/list-models.json": ("api", None, lambda r, j, e: len(body(r)["models"]) == 2 or pytest.fail(r)),
    # As stored, the sample is long past the signature's 5-minute tolerance: refused, nothing changes.
    "webhook/replicate.json": (
        "webhook",
        seed_sample_job,
        lambda r, j, e: (r["statusCode"], body(r)["code"]) == (401, "INVALID_SIGNATURE") or pytest.fail(r),
    ),
    "api/stats.json": ("api", None, lambda r, j, e: body(r)["total_jobs"] >= 0 or pytest.fail(r)),
    "api/docs.json": ("api", None, lambda r, j, e: "SwaggerUIBundle" in r["body"] or pytest.fail(r)),
    "api/openapi.json": ("api", None, lambda r, j, e: "/api/v1/generate" in body(r)["paths"] or pytest.fail(r)),
    "dispatcher/sqs-batch.json": (
        "dispatcher",
        seed_sample_job,
        lambda r, j, e: (r == {"batchItemFailures": []} and len(executions_of(e, j)) == 1) or pytest.fail(r),
    ),
    "dispatcher/sqs-batch-with-poison.json": (
        "dispatcher",
        seed_sample_job,
        lambda r, j, e: (
            r == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]} or pytest.fail(r)
        ),
    ),
    # The sample job asks for no webhook: the delivery is refused and recorded, nothing is retried.
    "notifier/sqs-event.json": (
        "notifier",
        seed_sample_job,
        lambda r, j, e: (
            (r == {"batchItemFailures": []} and [d.state for d in deliveries.of_job(j)] == ["given_up"])
            or pytest.fail(r)
        ),
    ),
    "worker/generate.json": (
        "worker",
        seed_sample_job,
        lambda r, j, e: r == {"status": "completed", "outputs": [f"outputs/{j}/1/0.png"]} or pytest.fail(r),
    ),
    "worker/collect.json": (
        "worker",
        lambda j: (seed_sample_job(j), run_generate(j)),
        lambda r, j, e: r == {"status": "completed"} or pytest.fail(r),
    ),
    # What the provider's completed webhook hands the worker, here for a job already completed: a
    # no-op (its call back finds no waiting state).
    "worker/finish.json": (
        "worker",
        lambda j: (seed_sample_job(j), run_generate(j)),
        lambda r, j, e: r == {"status": "completed"} or pytest.fail(r),
    ),
    # A batch of the table's stream (a job created, then started), for an owner of its own. The
    # test delivers it twice, as Lambda retries a batch: it counts once.
    "counters/stream-batch.json": (
        "counters",
        None,
        lambda r, j, e: (
            (r == {"changes": 2, "counters": 2} and counted_once().items() <= store().stats(f"owner-{j}").items())
            or pytest.fail(f"{r} {store().stats(f'owner-{j}')}")
        ),
    ),
    "finalizer/workflow-catch.json": (
        "finalizer",
        seed_sample_job,
        lambda r, j, e: (r["recorded"], r["error"]["code"]) == (True, "PROVIDER_UNAVAILABLE") or pytest.fail(r),
    ),
    "finalizer/execution-timed-out.json": (
        "finalizer",
        seed_sample_job,
        lambda r, j, e: (r["recorded"], r["error"]["code"]) == (True, "JOB_TIMEOUT") or pytest.fail(r),
    ),
}


def test_every_sample_event_has_a_test():
    files = {str(p.relative_to(ROOT / "events")) for p in (ROOT / "events").rglob("*.json")}
    assert files == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_event(name, emulator):
    function, set_up, check = CASES[name]
    job_id = str(uuid.uuid4())
    event = load_event(name, job_id)
    if "execution_started_at" in event:
        event["execution_started_at"] = to_iso(utcnow())  # as the workflow passes it: now
    if set_up:
        set_up(job_id)
    logger.append_keys(left_by_an_earlier_event="stale")  # a warm container's previous invocation
    with emulator.dispatch_paused():
        reply = emulator.runtime.invoke(function, event)
        if function == "counters":  # Lambda retries a batch as it was
            assert emulator.runtime.invoke(function, event) == reply
    check(reply, job_id, emulator)
    assert "left_by_an_earlier_event" not in logger.get_current_keys()  # every invocation starts clean
    if function == "finalizer":
        assert store().get(job_id).status == "failed"
    if name == "dispatcher/sqs-batch.json":
        wait_for(lambda: store().get(job_id).status == "completed", what="the dispatched job to complete")


@pytest.mark.parametrize(
    ("function", "record_handler"), [("notifier", "deliver_record"), ("dispatcher", "dispatch_record")]
)
def test_a_batch_record_that_fails_to_parse_carries_no_earlier_records_job_id(function, record_handler, monkeypatch):
    """Within one batch, a record whose body cannot be read must not log with the job id of the
    record before it."""
    import importlib

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from pydantic import ValidationError

    module = importlib.import_module(f"functions.{function}.app")
    handle = getattr(module, record_handler)
    event = load_event(f"{function}/{'sqs-event' if function == 'notifier' else 'sqs-batch'}.json", str(uuid.uuid4()))
    good = event["Records"][0]
    monkeypatch.setattr(module, "webhook_delivery" if function == "notifier" else "jobs", _Quiet())
    handle(SQSRecord(good))
    assert "job_id" in logger.get_current_keys()
    with pytest.raises(ValidationError):
        handle(SQSRecord(dict(good, body="not a message")))
    assert "job_id" not in logger.get_current_keys()


class _Quiet:
    """Stands in for what a record handler calls once it read its record."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: "done"
