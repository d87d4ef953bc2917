"""The whole pipeline on the emulation: HTTP gateway -> api -> DynamoDB + SQS -> dispatcher ->
Step Functions (the real ASL) -> worker -> S3, and back out through the API."""

from __future__ import annotations

import io
import json
import time

import httpx
from PIL import Image

from shared.aws import client
from shared.errors import PermanentError, TransientError
from tests.conftest import (
    executions_of,
    stats_of,
    status_of,
    submit,
    unique_prompt,
    wait_for,
    wait_until_done,
    wait_until_status,
)


def test_happy_path_produces_a_downloadable_png_of_the_requested_size(api, emulator):
    # Given the old service's request body, verbatim
    body = {
        "prompt": "a lighthouse at dawn, oil painting",
        "parameters": {"width": 640, "height": 384, "num_inference_steps": 20, "guidance_scale": 7.5},
    }
    # When it is submitted
    response = api.post("/api/v1/generate", json=body)
    # Then it is accepted at once, with links to follow it
    assert response.status_code == 202, response.text
    accepted = response.json()
    job_id = accepted["job_id"]
    assert accepted["status"] == "pending"
    assert accepted["links"]["status"] == f"/api/v1/status/{job_id}"
    assert response.headers["location"] == f"/api/v1/jobs/{job_id}"

    # And it completes, with one output of the requested size
    job = wait_until_done(api, job_id)
    assert job["status"] == "completed", job
    assert job["progress"] == 100
    assert job["request"]["parameters"]["width"] == 640
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    assert [a["status"] for a in job["attempts"]] == ["completed"]
    [output] = job["outputs"]
    assert (output["width"], output["height"], output["content_type"]) == (640, 384, "image/png")

    # And the presigned URL downloads a valid PNG from this machine
    download = httpx.get(output["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(download.content))
    image.verify()
    assert (image.format, image.size) == ("PNG", (640, 384))
    assert len(download.content) == output["size_bytes"]

    # And the workflow really ran our worker in-process, in one state on the happy path
    [execution] = executions_of(emulator, job_id)
    assert execution["status"] == "SUCCEEDED"
    history = client("stepfunctions").get_execution_history(executionArn=execution["executionArn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered == ["Generate"]
    assert emulator.runtime.invocations["worker"] >= 1


def test_several_outputs_are_stored_under_the_job_prefix(api, emulator):
    job_id = submit(api, width=256, height=256, num_outputs=3, seed=42)
    job = wait_until_done(api, job_id)
    assert job["status"] == "completed"
    assert [o["index"] for o in job["outputs"]] == [0, 1, 2]
    listed = client("s3").list_objects_v2(Bucket=emulator.resources.bucket, Prefix=f"outputs/{job_id}/1/")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == [f"outputs/{job_id}/1/{i}.png" for i in range(3)]
    head = client("s3").head_object(Bucket=emulator.resources.bucket, Key=keys[0])
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["seed"] == "42"


def test_progress_rises_to_100_while_a_client_polls(api, configure):
    configure(MOCK_GENERATION_SECONDS="2")
    job_id = submit(api, width=128, height=128)
    seen: list[tuple[str, int]] = []

    def done() -> bool:
        status = status_of(api, job_id)
        seen.append((status["status"], status["progress"]))
        return status["status"] in ("completed", "failed")

    wait_for(done, timeout=20, interval=0.05, what="completion")
    progress = [p for _, p in seen]
    assert progress == sorted(progress), "progress never goes down"
    assert seen[-1] == ("completed", 100)
    during = {p for s, p in seen if s == "processing" and 0 < p < 100}
    assert len(during) >= 3, f"expected intermediate progress values, saw {seen}"


def test_cancel_while_pending_stops_the_job_before_it_starts(api, emulator):
    with emulator.dispatch_paused():
        job_id = submit(api)
        response = api.post(f"/api/v1/jobs/{job_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
    # The queued message is consumed, but no workflow starts for a cancelled job.
    wait_for(lambda: _queue_is_empty(emulator), what="the queue to drain")
    time.sleep(0.5)
    assert executions_of(emulator, job_id) == []
    job = api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert job["error"] == {"code": "CANCELLED", "message": "Cancelled by request"}
    assert job["outputs"] == []


def test_cancel_while_processing_stops_the_workflow_and_the_worker(api, emulator, configure):
    configure(MOCK_GENERATION_SECONDS="3")
    job_id = submit(api, width=128, height=128)
    wait_for(lambda: status_of(api, job_id)["progress"] > 0, what="the job to make progress")

    response = api.post(f"/api/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    wait_for(lambda: [e["status"] for e in executions_of(emulator, job_id)] == ["ABORTED"], what="ABORTED")
    time.sleep(3.5)  # longer than the generation would have taken
    job = api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert job["outputs"] == []
    listed = client("s3").list_objects_v2(Bucket=emulator.resources.bucket, Prefix=f"outputs/{job_id}/")
    assert listed.get("KeyCount", 0) == 0, "the worker stopped before storing anything"


def test_a_transient_error_is_retried_then_succeeds(api, faults):
    prompt = unique_prompt("transient")
    faults.script(prompt, TransientError("Replicate answered 503", code="PROVIDER_UNAVAILABLE"))
    job_id = submit(api, prompt, width=64, height=64)
    job = wait_until_done(api, job_id)
    assert job["status"] == "completed", job
    assert faults.calls[prompt] == 2
    assert job["attempt"] == 1, "a workflow retry is not a new attempt of the job"


def test_transient_errors_past_max_retry_attempts_fail_the_job(api, faults, emulator):
    prompt = unique_prompt("flaky")
    faults.script(prompt, *[TransientError("Replicate answered 503", code="PROVIDER_UNAVAILABLE")] * 5)
    job_id = submit(api, prompt, width=64, height=64)
    job = wait_until_done(api, job_id, timeout=30)
    assert job["status"] == "failed"
    assert job["error"] == {"code": "PROVIDER_UNAVAILABLE", "message": "Replicate answered 503"}
    assert faults.calls[prompt] == 3, "1 try + MAX_RETRY_ATTEMPTS (2) retries"
    [execution] = executions_of(emulator, job_id)
    assert execution["status"] == "FAILED"


def test_a_permanent_error_fails_the_job_at_once_with_its_code(api, faults, emulator):
    prompt = unique_prompt("permanent")
    faults.script(prompt, PermanentError("The prompt was flagged by the safety checker", code="CONTENT_REJECTED"))
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id)
    assert job["status"] == "failed"
    assert job["error"] == {"code": "CONTENT_REJECTED", "message": "The prompt was flagged by the safety checker"}
    assert faults.calls[prompt] == 1, "permanent errors are not retried"
    assert job["attempts"][-1]["error"]["code"] == "CONTENT_REJECTED"
    [execution] = executions_of(emulator, job_id)
    described = client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    assert described["error"] == "CONTENT_REJECTED"


def test_an_unexpected_worker_crash_fails_the_job_without_leaking_details(api, faults):
    prompt = unique_prompt("crash")
    faults.script(prompt, KeyError("secret internal detail"))
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "INTERNAL_ERROR"
    assert "secret" not in json.dumps(job) and "Traceback" not in json.dumps(job)


def test_retry_after_failure_runs_a_new_attempt_of_the_same_job(api, faults, emulator):
    prompt = unique_prompt("retry")
    faults.script(prompt, PermanentError("Out of credit", code="PROVIDER_BILLING"))
    job_id = submit(api, prompt, width=64, height=64)
    assert wait_until_done(api, job_id)["status"] == "failed"

    response = api.post(f"/api/v1/jobs/{job_id}/retry")

    assert response.status_code == 202, response.text
    assert response.json()["job_id"] == job_id
    job = wait_until_done(api, job_id)
    assert job["status"] == "completed"
    assert job["attempt"] == 2
    assert job["error"] is None
    assert [(a["attempt"], a["status"]) for a in job["attempts"]] == [(1, "failed"), (2, "completed")]
    assert job["attempts"][0]["error"]["code"] == "PROVIDER_BILLING"
    assert job["outputs"][0]["url"].split("?")[0].endswith(f"outputs/{job_id}/2/0.png")
    assert sorted(e["name"] for e in executions_of(emulator, job_id)) == [f"{job_id}-1", f"{job_id}-2"]


def test_retry_after_cancel(api, emulator):
    with emulator.dispatch_paused():
        job_id = submit(api, width=64, height=64)
        assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    response = api.post(f"/api/v1/jobs/{job_id}/retry")
    assert response.status_code == 202
    job = wait_until_done(api, job_id)
    assert (job["status"], job["attempt"]) == ("completed", 2)


def test_the_deadline_ends_a_stuck_job_failed(api, configure, emulator):
    # Generation would take 30 s; the job may take 3.
    configure(JOB_TIMEOUT="3", MOCK_GENERATION_SECONDS="30")
    started = time.monotonic()
    job_id = submit(api, width=64, height=64)
    job = wait_until_done(api, job_id, timeout=15)
    assert job["status"] == "failed"
    assert job["error"] == {"code": "JOB_TIMEOUT", "message": "The job did not finish within 3 seconds"}
    assert time.monotonic() - started < 8
    assert job["outputs"] == []


def test_the_execution_timeout_catches_a_worker_that_ignores_the_deadline(
    api, configure, faults, monkeypatch, emulator
):
    # Both worker states hang past the deadline (their own checks bypassed): the execution's own
    # timeout ends it, and the execution status event makes the finalizer fail the job.
    from shared.attempt import Attempt
    from shared.job_store import store

    configure(JOB_TIMEOUT="2")
    prompt = unique_prompt("hang")
    faults.script(prompt, lambda *args, **kwargs: time.sleep(6) or [])
    collect = Attempt.collect

    def hanging_collect(self):
        if store().get(self.task.job_id).request.prompt == prompt:
            time.sleep(6)
        return collect(self)

    monkeypatch.setattr(Attempt, "collect", hanging_collect)
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id, timeout=15)
    assert job["status"] == "failed"
    assert job["error"] == {"code": "JOB_TIMEOUT", "message": "The job did not finish within 2 seconds"}
    [execution] = executions_of(emulator, job_id)
    assert execution["status"] == "TIMED_OUT"
    time.sleep(6)  # the hung worker wakes up and finds the job no longer its own
    assert status_of(api, job_id)["status"] == "failed"


def test_a_duplicate_delivery_starts_one_execution(api, emulator):
    with emulator.dispatch_paused():
        job_id = submit(api, width=64, height=64)
        # The same message delivered twice, as SQS at-least-once delivery allows.
        client("sqs").send_message(
            QueueUrl=emulator.resources.queue_url, MessageBody=json.dumps({"job_id": job_id, "attempt": 1})
        )
    assert wait_until_done(api, job_id)["status"] == "completed"
    wait_for(lambda: _queue_is_empty(emulator), what="the queue to drain")
    assert [e["name"] for e in executions_of(emulator, job_id)] == [f"{job_id}-1"]


def test_a_duplicate_dispatch_of_a_started_attempt_is_harmless(api, emulator):
    from tests.conftest import load_event

    with emulator.dispatch_paused():
        job_id = submit(api, width=64, height=64)
        event = load_event("dispatcher/sqs-batch.json", job_id)
        first = emulator.runtime.invoke("dispatcher", event)
        second = emulator.runtime.invoke("dispatcher", event)
    assert first == second == {"batchItemFailures": []}
    assert len(executions_of(emulator, job_id)) == 1
    assert wait_until_done(api, job_id)["status"] == "completed"


def test_poison_messages_go_to_the_dead_letter_queue(emulator):
    sqs = client("sqs")
    sqs.send_message(QueueUrl=emulator.resources.queue_url, MessageBody="this is not a job message")

    def in_dlq() -> list:
        got = sqs.receive_message(QueueUrl=emulator.resources.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [m for m in got.get("Messages", []) if m["Body"] == "this is not a job message"]

    [message] = wait_for(in_dlq, timeout=20, interval=0.5, what="the poison message in the DLQ")
    sqs.delete_message(QueueUrl=emulator.resources.dlq_url, ReceiptHandle=message["ReceiptHandle"])


def test_a_job_whose_workflow_cannot_start_fails_on_its_last_delivery(api, emulator, configure):
    # The state machine is unreachable: every StartExecution fails.
    configure(STATE_MACHINE_ARN=emulator.resources.state_machine_arn + "-missing")
    job_id = submit(api)
    job = wait_until_done(api, job_id, timeout=20)
    assert job["status"] == "failed"
    assert job["error"] == {"code": "DISPATCH_FAILED", "message": "The job's workflow could not be started"}


def test_when_queueing_fails_the_client_gets_503_and_the_job_is_failed(api, emulator, configure):
    configure(JOBS_QUEUE_URL=emulator.resources.queue_url + "-missing")
    before = stats_of(api, emulator)
    response = api.post("/api/v1/generate", json={"prompt": unique_prompt("unqueued")})
    assert response.status_code == 503
    assert response.json()["code"] == "QUEUE_UNAVAILABLE"
    after = stats_of(api, emulator)
    assert after["by_status"]["failed"] == before["by_status"]["failed"] + 1
    page = api.get("/api/v1/jobs", params={"status": "failed", "limit": 5}).json()["jobs"]
    failed = next(j for j in page if j["prompt"].startswith("unqueued"))
    job = api.get(f"/api/v1/jobs/{failed['job_id']}").json()
    assert job["error"]["code"] == "QUEUE_UNAVAILABLE"


def test_stats_follow_the_jobs(api, emulator):
    before = stats_of(api, emulator)
    with emulator.dispatch_paused():
        pending = submit(api)
        mid = stats_of(api, emulator)
        assert mid["by_status"]["pending"] == before["by_status"]["pending"] + 1
        assert mid["total_jobs"] == before["total_jobs"] + 1
        api.post(f"/api/v1/jobs/{pending}/cancel")
    done = submit(api, width=64, height=64)
    wait_until_status(api, done, "completed")
    after = stats_of(api, emulator)
    assert after["total_jobs"] == before["total_jobs"] + 2
    assert after["by_status"]["pending"] == before["by_status"]["pending"]
    assert after["by_status"]["cancelled"] == before["by_status"]["cancelled"] + 1
    assert after["by_status"]["completed"] == before["by_status"]["completed"] + 1
    assert after["average_duration_seconds"] > 0
    assert 0 < after["success_rate"] <= 1


def _queue_is_empty(emulator) -> bool:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=emulator.resources.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attributes.values())
