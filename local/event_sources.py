"""What AWS would deliver to our functions, emulated with small poller threads:

- `SqsEventSource`: the SQS event source mapping of the dispatcher. Receives batches, invokes the
  function with an SQS event, deletes the records that succeeded and leaves the reported
  `batchItemFailures` to reappear after the visibility timeout (the queue's redrive policy moves
  them to the DLQ after maxReceiveCount).
- `StreamEventSource`: the jobs table's stream, delivered to the counters function as Lambda's
  DynamoDB event source mapping does: records matching the filters, in order, in batches of up to
  `batch_size` gathered for up to the batching window; a batch that fails is retried as it was (up
  to `retry_attempts` times; deployed, it then goes to the on-failure queue).
- `ExecutionStatusEvents`: the EventBridge rule on "Step Functions Execution Status Change" for
  executions that ended TIMED_OUT, FAILED or ABORTED, delivered to the finalizer. moto reports each
  execution's end to `execution_ended` (hooked in local/emulator.py), so the cost is per ended
  execution, not a listing of every execution ever run on each poll.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.aws import client

log = logging.getLogger("local.event_sources")

Invoke = Callable[[str, Any], Any]

_execution_listeners: list[Callable[[dict[str, Any]], None]] = []


def execution_ended(execution: dict[str, Any]) -> None:
    """Called by the emulation when an execution ends, with its DescribeExecution output."""
    for listener in list(_execution_listeners):
        listener(execution)


class _Poller:
    interval = 0.2

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def pause(self) -> None:
        """Stop polling (like disabling an event source mapping); returns once no poll is under way."""
        self._running.clear()
        self._idle.clear()
        self._idle.wait(timeout=10)

    def resume(self) -> None:
        self._running.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._running.is_set():
                self._idle.set()
                self._stop.wait(self.interval)
                continue
            try:
                busy = self.poll_once()
            except Exception:
                log.exception("%s poll failed", type(self).__name__)
                busy = False
            if not busy:
                self._stop.wait(self.interval)

    def poll_once(self) -> bool:
        raise NotImplementedError


class SqsEventSource(_Poller):
    def __init__(self, invoke: Invoke, function: str, queue_url: str, queue_arn: str, batch_size: int) -> None:
        super().__init__()
        self.invoke, self.function = invoke, function
        self.queue_url, self.queue_arn, self.batch_size = queue_url, queue_arn, batch_size

    def poll_once(self) -> bool:
        sqs = client("sqs")
        messages = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return False
        event = {"Records": [self._record(m) for m in messages]}
        try:
            response = self.invoke(self.function, event) or {}
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except Exception:
            log.exception("%s failed its whole batch", self.function)
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return True

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.queue_arn.split(":")[3],
        }


class StreamEventSource(_Poller):
    interval = 0.1

    def __init__(
        self,
        invoke: Invoke,
        function: str,
        stream_arn: str,
        *,
        batch_size: int,
        window_seconds: float,
        retry_attempts: int,
        filters: tuple[dict[str, Any], ...],
    ) -> None:
        super().__init__()
        self.invoke, self.function, self.stream_arn = invoke, function, stream_arn
        self.batch_size, self.window, self.retry_attempts, self.filters = (
            batch_size,
            window_seconds,
            retry_attempts,
            filters,
        )
        self._iterators: dict[str, str | None] = {}
        self._pending: list[dict[str, Any]] = []
        self._first_pending_at = 0.0
        self._flush = threading.Event()
        self._caught_up = threading.Condition()
        self._empty_polls = 0
        self.failed_batches: list[list[dict[str, Any]]] = []

    def settle(self, timeout: float = 20, flush: bool = True) -> None:
        """Return once every change written before the call has been delivered: at once (tests
        read stats), or with flush=False once the batching window let it go (make cost)."""
        with self._caught_up:
            target = self._empty_polls + 2
            if flush:
                self._flush.set()
            if not self._caught_up.wait_for(lambda: self._empty_polls >= target, timeout=timeout):
                raise TimeoutError("the table's stream did not settle")

    def poll_once(self) -> bool:
        fetched = self._fetch()
        self._pending += [r for r in fetched if self._matches(r)]
        if self._pending and not self._first_pending_at:
            self._first_pending_at = time.monotonic()
        due = self._pending and (
            len(self._pending) >= self.batch_size
            or time.monotonic() - self._first_pending_at >= self.window
            or self._flush.is_set()
        )
        if due:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            self._first_pending_at = time.monotonic() if self._pending else 0.0
            self._deliver(batch)
        if not fetched and not self._pending:
            with self._caught_up:
                self._empty_polls += 1
                self._flush.clear()
                self._caught_up.notify_all()
        return bool(fetched)

    def _fetch(self) -> list[dict[str, Any]]:
        streams = client("dynamodbstreams")
        if not self._iterators:
            shards = streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
            for shard in shards:
                self._iterators[shard["ShardId"]] = streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        records: list[dict[str, Any]] = []
        for shard, iterator in self._iterators.items():
            if iterator is None:
                continue
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard] = response.get("NextShardIterator")
            records += response.get("Records", [])
            _forget_iterator(iterator)
        return [json.loads(json.dumps(r | {"eventSourceARN": self.stream_arn}, default=str)) for r in records]

    def _matches(self, record: dict[str, Any]) -> bool:
        """Lambda's event filtering, for the patterns the spec uses (exact values in lists)."""

        def match(pattern: Any, value: Any) -> bool:
            if isinstance(pattern, list):
                return value in pattern
            return isinstance(value, dict) and all(match(p, value.get(k)) for k, p in pattern.items())

        return any(match(pattern, record) for pattern in self.filters)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        for _ in range(1 + self.retry_attempts):
            try:
                self.invoke(self.function, {"Records": batch})
                return
            except Exception:
                log.exception("%s failed a batch of %d records; retrying it", self.function, len(batch))
                time.sleep(0.2)
        self.failed_batches.append(batch)


def _forget_iterator(iterator: str) -> None:
    """moto keeps every shard iterator it hands out (one per poll here: megabytes an hour)."""
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    from local.lambdas import ACCOUNT, REGION

    dynamodbstreams_backends[ACCOUNT][REGION].shard_iterators.pop(iterator, None)


class ExecutionStatusEvents(_Poller):
    STATUSES = ("TIMED_OUT", "FAILED", "ABORTED")
    interval = 0.5

    def __init__(self, invoke: Invoke, function: str, state_machine_arn: str) -> None:
        super().__init__()
        self.invoke, self.function, self.state_machine_arn = invoke, function, state_machine_arn
        self._ended: queue.Queue[dict[str, Any]] = queue.Queue()

    def start(self) -> None:
        _execution_listeners.append(self._on_end)
        super().start()

    def stop(self) -> None:
        if self._on_end in _execution_listeners:
            _execution_listeners.remove(self._on_end)
        super().stop()

    def _on_end(self, execution: dict[str, Any]) -> None:
        if execution["status"] in self.STATUSES and execution["stateMachineArn"].startswith(self.state_machine_arn):
            self._ended.put(execution)

    def poll_once(self) -> bool:
        try:
            execution = self._ended.get(timeout=self.interval)
        except queue.Empty:
            return False
        if not self._deliver(execution):
            time.sleep(1)
            self._ended.put(execution)  # EventBridge retries: so do we
        return True

    def _deliver(self, execution: dict[str, Any]) -> bool:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resources": [execution["executionArn"]],
            "detail": {
                "executionArn": execution["executionArn"],
                "stateMachineArn": execution["stateMachineArn"],
                "name": execution["name"],
                "status": execution["status"],
                "input": execution.get("input"),
                "error": execution.get("error"),
                "cause": execution.get("cause"),
            },
        }
        try:
            self.invoke(self.function, json.loads(json.dumps(event, default=str)))
        except Exception:
            log.exception("%s failed on an execution status event", self.function)
            return False
        return True
