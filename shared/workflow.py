"""Step Functions executions, one per job attempt.

The execution name is derived from the job id and attempt, so a duplicate queue delivery cannot
start a second workflow (StartExecution answers ExecutionAlreadyExists) and the execution ARN is
known without storing it.
"""

from __future__ import annotations

import json
from typing import Any

from shared.aws import client, error_code
from shared.settings import get_settings
from shared.usage import Usage

# What Step Functions answers for a token that no longer waits (used, timed out, stopped).
CALLBACK_GONE = ("InvalidToken", "TaskTimedOut", "TaskDoesNotExist")


def execution_name(job_id: str, attempt: int) -> str:
    return f"{job_id}-{attempt}"


def parse_execution_name(name: str) -> tuple[str, int]:
    job_id, _, attempt = name.rpartition("-")
    return job_id, int(attempt)


def execution_arn(job_id: str, attempt: int) -> str:
    machine = get_settings().state_machine_arn
    return f"{machine.replace(':stateMachine:', ':execution:')}:{execution_name(job_id, attempt)}"


def start(job_id: str, attempt: int, usage: Usage) -> bool:
    """Start the attempt's workflow. False if it was already started (a duplicate delivery).
    `usage`: what starting it cost, for the job's first write to add (shared/usage.py)."""
    try:
        client("stepfunctions").start_execution(
            stateMachineArn=get_settings().state_machine_arn,
            name=execution_name(job_id, attempt),
            input=json.dumps({"job_id": job_id, "attempt": attempt, "usage": usage.rounded().model_dump()}),
        )
        return True
    except Exception as exc:
        if error_code(exc) == "ExecutionAlreadyExists":
            return False
        raise


class Pacer:
    """Spaces out starts so one dispatcher instance starts at most `per_second` per second.

    The SQS event source runs at most QUEUE_MAX_CONCURRENCY dispatchers, so each paces itself to
    its share of DISPATCH_RATE_PER_SECOND: together they never start workflows (and so provider
    creates) faster than that, however large the burst in the queue.
    """

    def __init__(self, per_second: float, clock: Any = None, sleep: Any = None) -> None:
        import time

        self.interval = 1.0 / per_second
        self.clock, self.sleep = clock or time.monotonic, sleep or time.sleep
        self.next_start: float | None = None

    @classmethod
    def from_settings(cls) -> Pacer:
        settings = get_settings()
        return cls(settings.dispatch_rate_per_second / settings.queue_max_concurrency)

    def wait_turn(self) -> None:
        now = self.clock()
        if self.next_start is not None and now < self.next_start:
            self.sleep(self.next_start - now)
            now = self.next_start
        self.next_start = now + self.interval


def stop(job_id: str, attempt: int, cause: str) -> None:
    """Stop the attempt's workflow if it runs. Safe to call when there is none."""
    try:
        client("stepfunctions").stop_execution(
            executionArn=execution_arn(job_id, attempt), error="JobCancelled", cause=cause
        )
    except Exception as exc:
        if error_code(exc) not in ("ExecutionDoesNotExist", "ExecutionNotFound"):
            raise


def send_task_success(task_token: str, result: dict[str, Any]) -> bool:
    """Resume a state waiting for this token. False if it no longer waits (duplicate, too late)."""
    try:
        client("stepfunctions").send_task_success(taskToken=task_token, output=json.dumps(result))
        return True
    except Exception as exc:
        if error_code(exc) in CALLBACK_GONE:
            return False
        raise


def send_task_failure(task_token: str, error: str, cause: str) -> bool:
    """End a waiting state with an error, which its Retry and Catch match by name, as they match a
    Lambda task's error type. False if it no longer waits."""
    try:
        client("stepfunctions").send_task_failure(taskToken=task_token, error=error[:256], cause=cause[:32_768])
        return True
    except Exception as exc:
        if error_code(exc) in CALLBACK_GONE:
            return False
        raise


def hand_to_worker(task: dict[str, Any]) -> None:
    """Run the worker on `task` asynchronously (Lambda's event invocation: queued by Lambda and,
    if the worker fails, tried twice more). The caller does not wait for it."""
    client("lambda").invoke(
        FunctionName=get_settings().worker_function_name, InvocationType="Event", Payload=json.dumps(task).encode()
    )


def send_task_heartbeat(task_token: str) -> bool:
    """Tell a waiting state the work is alive. False if it no longer waits."""
    try:
        client("stepfunctions").send_task_heartbeat(taskToken=task_token)
        return True
    except Exception as exc:
        if error_code(exc) in CALLBACK_GONE:
            return False
        raise
