"""Recover what landed in the jobs dead-letter queue: `make redrive` (STACK=<stack> when deployed).

A message lands there after its last delivery, and by then the dispatcher has already marked its
job failed (DISPATCH_FAILED): moving the message back would only be skipped (its attempt is no
longer pending). So each message's job gets a new attempt instead, the normal retry path (same
job id, attempt + 1, queued afresh), and the message is deleted. Messages whose job moved on
(retried, cancelled, completed) and messages that are not jobs are deleted and reported; a job
whose retry could not be queued keeps its message, for the next run.

    python -m ops.redrive --stack MediaGeneration-dev     # resources from the stack's outputs
    python -m ops.redrive                                 # the emulation on EMULATOR_PORT
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from pydantic import ValidationError

WAIT_SECONDS = 1  # a short long-poll: an empty receive means the queue is drained


def redrive(dead_letter_queue_url: str) -> Counter[str]:
    """Drain the dead-letter queue, starting a new attempt of each failed job in it."""
    from shared import jobs, queue
    from shared.aws import client
    from shared.errors import AttemptLimitReached, InvalidTransition, JobNotFound, QueueUnavailable
    from shared.job_store import store

    sqs, outcomes = client("sqs"), Counter[str]()
    while True:
        messages = sqs.receive_message(
            QueueUrl=dead_letter_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_SECONDS
        ).get("Messages", [])
        if not messages:
            return outcomes
        for message in messages:
            try:
                job_message = queue.JobMessage.model_validate_json(message["Body"])
                job = store().get(job_message.job_id)
                if job.attempt != job_message.attempt:
                    outcome = "moved on"
                else:
                    outcome = f"retried as attempt {jobs.retry(job.job_id).attempt}"
            except (ValidationError, ValueError):
                outcome = "not a job message"
            except JobNotFound:
                outcome = "job expired or unknown"
            except AttemptLimitReached:
                outcome = "attempt limit reached"
            except InvalidTransition as exc:
                outcome = f"job is {exc.current_status}"
            except QueueUnavailable:
                outcomes["kept: queue unavailable"] += 1
                continue  # the message stays, and comes back on the next run
            outcomes[outcome.split(" as attempt")[0]] += 1
            print(json.dumps({"message_id": message["MessageId"], "outcome": outcome}), flush=True)
            sqs.delete_message(QueueUrl=dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"])


def stack_resources(stack: str) -> dict[str, str]:
    """The stack's outputs as the settings the domain code reads, and the dead-letter queue."""
    import boto3

    [description] = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    return {
        "JOBS_TABLE_NAME": outputs["JobsTableName"],
        "JOBS_QUEUE_URL": outputs["JobsQueueUrl"],
        "DEAD_LETTER_QUEUE_URL": outputs["DeadLetterQueueUrl"],
    }


def emulation_resources(port: str) -> dict[str, str]:
    """The emulation has no stack: its resources have the names local/emulator.py gives them, and
    the jobs queue's redrive policy names its dead-letter queue."""
    import boto3

    from local.emulator import NAMES

    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    sqs = boto3.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=NAMES["queue"])["QueueUrl"]
    policy = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    target = json.loads(policy["RedrivePolicy"])["deadLetterTargetArn"].rsplit(":", 1)[-1]
    return {
        "JOBS_QUEUE_URL": queue_url,
        "DEAD_LETTER_QUEUE_URL": sqs.get_queue_url(QueueName=target)["QueueUrl"],
        "JOBS_TABLE_NAME": NAMES["table"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make redrive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="a deployed stack (default: the emulation on EMULATOR_PORT)")
    args = parser.parse_args(argv)
    resources = (
        stack_resources(args.stack) if args.stack else emulation_resources(os.environ.get("EMULATOR_PORT", "4566"))
    )
    dead_letters = resources.pop("DEAD_LETTER_QUEUE_URL")
    os.environ.update(resources)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "MediaGeneration")
    outcomes = redrive(dead_letters)
    print(json.dumps({"redriven": dict(outcomes)} if outcomes else {"redriven": "the dead-letter queue is empty"}))
    return 1 if outcomes.get("kept: queue unavailable") else 0


if __name__ == "__main__":
    sys.exit(main())
