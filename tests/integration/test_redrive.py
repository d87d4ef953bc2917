"""`make redrive`: jobs whose messages reached the dead-letter queue get a new attempt, and the
dead-letter queue is emptied. Run as the operator runs it, against the emulation's endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import urlparse

from shared.aws import client
from tests.conftest import ROOT, submit, wait_for, wait_until_done


def dead_letters(emulator) -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=emulator.resources.dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_redrive_starts_a_new_attempt_of_each_dead_lettered_job_and_empties_the_queue(api, emulator, configure):
    machine = emulator.resources.state_machine_arn
    configure(STATE_MACHINE_ARN=machine + "-missing")  # every StartExecution fails
    job_id = submit(api)
    assert wait_until_done(api, job_id, timeout=30)["error"]["code"] == "DISPATCH_FAILED"
    client("sqs").send_message(QueueUrl=emulator.resources.dlq_url, MessageBody="not a job")
    wait_for(lambda: dead_letters(emulator) >= 2, timeout=30, interval=0.5, what="the job's message in the DLQ")
    configure(STATE_MACHINE_ARN=machine)  # the cause is fixed

    port = str(urlparse(emulator.endpoint).port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "AWS_ENDPOINT"))} | {"EMULATOR_PORT": port}
    run = subprocess.run(
        [sys.executable, "-m", "ops.redrive"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])["redriven"]
    assert summary["retried"] >= 1 and summary["not a job message"] >= 1, run.stdout

    job = wait_until_done(api, job_id, timeout=30)
    assert (job["status"], job["attempt"]) == ("completed", 2), job
    assert [a["error"]["code"] for a in job["attempts"] if a["status"] == "failed"] == ["DISPATCH_FAILED"]
    wait_for(lambda: dead_letters(emulator) == 0, timeout=10, what="an empty DLQ")
