"""The embedded AWS emulation behind `make dev`, `make invoke` and the tests.

moto runs in-process as a server on 127.0.0.1 (so presigned S3 URLs download from this machine),
with Step Functions really executing the workflow definition. Resources are created from
infra/spec.py, the same spec CDK deploys. Lambda functions run in-process (local/lambdas.py), fed
by emulated event sources (local/event_sources.py) and, optionally, the HTTP gateway.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from infra import spec
from local import moto_patches
from local.event_sources import ExecutionStatusEvents, SqsEventSource, StreamEventSource
from local.gateway import Gateway
from local.lambdas import ACCOUNT, REGION, LambdaRuntime, function_arn
from local.moto_transport import InProcessTransport
from shared.aws import client, new_session, reset_clients
from shared.schemas import WEBHOOK_PATH
from shared.settings import get_settings

log = logging.getLogger("local.emulator")

NAMES = {
    "table": "media-jobs",
    "queue": "media-jobs",
    "dlq": "media-jobs-dlq",
    "notify_queue": "media-notify",
    "notify_dlq": "media-notify-dlq",
    "bucket": "media-outputs",
    "state_machine": "media-job",
}

# What a Lambda function would have in its environment, minus the resource names set below.
BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_SERVICE_NAME": "media-generation",
    "POWERTOOLS_METRICS_NAMESPACE": "MediaGeneration",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Resources:
    table: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    bucket: str
    state_machine_arn: str


class Emulator:
    def __init__(
        self,
        aws_port: int | None = None,
        api_port: int | None = None,
        queue: spec.QueueSpec = spec.QUEUE,
        env: dict[str, str] | None = None,
        stream_window_seconds: float | None = None,
    ) -> None:
        """`stream_window_seconds`: the table stream's batching window (default: the spec's; tests
        shorten it, as they shorten the queue's visibility timeout)."""
        self.aws_port = aws_port or free_port()
        self.api_port = api_port
        self.queue_spec = queue
        self.env = env or {}
        self.stream_window_seconds = (
            spec.COUNTER_STREAM.max_batching_window_seconds if stream_window_seconds is None else stream_window_seconds
        )
        self.runtime = LambdaRuntime()
        self.resources: Resources | None = None
        self._server: Any = None
        self._workers: list[Any] = []
        self.gateway: Gateway | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Emulator:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log

        os.environ.update(BASE_ENV | {"AWS_ENDPOINT_URL": self.endpoint, "MOTO_PORT": str(self.aws_port)})
        os.environ.update(self.env)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.aws_port, verbose=False)
        self._server.start()
        self._configure_moto()
        moto_patches.apply()
        self.transport = InProcessTransport(self.endpoint, self._server._server.app)
        self._hook_default_session()
        self.resources = self._create_resources()
        self._start_event_sources()
        self._start_notifier()
        collect_less()
        if self.api_port is not None:
            self.authorizer = LocalAuthorizer(self.runtime)
            self.gateway = Gateway(
                self.runtime.invoke,
                "127.0.0.1",
                self.api_port,
                authorizer=self.authorizer,
                function_urls={WEBHOOK_PATH: "webhook"},  # the provider's webhooks: their own function
            )
            self.gateway.start()
        return self

    def stop(self) -> None:
        for worker in self._workers:
            worker.stop()
        if self.gateway:
            self.gateway.stop()
        if self._server:
            self._server.stop()
        reset_clients()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def dispatch_paused(self) -> Iterator[None]:
        """Hold queued jobs in the queue (the dispatcher's event source disabled) for a while."""
        for source in self.dispatch_sources:
            source.pause()
        try:
            yield
        finally:
            for source in self.dispatch_sources:
                source.resume()

    def configure(self, **env: str) -> None:
        """Change settings while running (the tests' shortened timeouts): the environment the
        functions read and the settings baked into the workflow definition."""
        os.environ.update(env)
        get_settings.cache_clear()
        assert self.resources
        client("stepfunctions").update_state_machine(
            stateMachineArn=self.resources.state_machine_arn, definition=self._workflow_definition()
        )

    # ---- setup -------------------------------------------------------------------------------
    def _configure_moto(self) -> None:
        import urllib.request

        config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/config", data=json.dumps(config).encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=10).close()

    def _hook_default_session(self) -> None:
        import boto3

        # A fresh session, then the hooks on it (Lambda invokes, the in-process path to moto): the
        # functions' clients come from it (shared/aws.py), and boto3's default session, which
        # moto's workflow tasks use, wraps the same one.
        boto3.setup_default_session(botocore_session=new_session())
        self.runtime.install(boto3.DEFAULT_SESSION)
        self.transport.install(boto3.DEFAULT_SESSION)

    def _create_resources(self) -> Resources:
        get_settings.cache_clear()
        table = self._create_table()
        dlq_url = client("sqs").create_queue(
            QueueName=NAMES["dlq"],
            Attributes={"MessageRetentionPeriod": str(self.queue_spec.dlq_retention_seconds)},
        )["QueueUrl"]
        dlq_arn = self._queue_arn(dlq_url)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.queue_spec.max_receive_count)}
        queue_url = client("sqs").create_queue(
            QueueName=NAMES["queue"],
            Attributes={
                "VisibilityTimeout": str(self.queue_spec.visibility_timeout_seconds),
                "MessageRetentionPeriod": str(self.queue_spec.retention_seconds),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        client("s3").create_bucket(Bucket=NAMES["bucket"])
        os.environ.update(
            {
                spec.RESOURCE_ENV["table"]: table,
                spec.RESOURCE_ENV["queue"]: queue_url,
                spec.RESOURCE_ENV["bucket"]: NAMES["bucket"],
                "QUEUE_MAX_RECEIVE_COUNT": str(self.queue_spec.max_receive_count),
                "QUEUE_MAX_CONCURRENCY": str(self.queue_spec.max_concurrency),
            }
        )
        get_settings.cache_clear()
        machine = client("stepfunctions").create_state_machine(
            name=NAMES["state_machine"],
            definition=self._workflow_definition(),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/media-job-workflow",
            type="STANDARD",
        )["stateMachineArn"]
        os.environ[spec.RESOURCE_ENV["state_machine"]] = machine
        get_settings.cache_clear()
        return Resources(table, queue_url, self._queue_arn(queue_url), dlq_url, NAMES["bucket"], machine)

    def _create_table(self) -> str:
        table = spec.TABLE
        attributes = (
            {table.partition_key} | {i.partition_key for i in table.indexes} | {i.sort_key for i in table.indexes}
        )
        client("dynamodb").create_table(
            TableName=NAMES["table"],
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
            KeySchema=[{"AttributeName": table.partition_key, "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.partition_key, "KeyType": "HASH"},
                        {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
                for index in table.indexes
            ],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": table.stream_view_type},
        )
        client("dynamodb").update_time_to_live(
            TableName=NAMES["table"],
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
        return NAMES["table"]

    def _workflow_definition(self) -> str:
        workflow_settings = spec.WorkflowSettings.from_settings(get_settings())
        arns = {name: function_arn(name) for name in spec.FUNCTIONS}
        return spec.render_workflow(spec.workflow_substitutions(arns, workflow_settings))

    def _start_notifier(self) -> None:
        """The client webhook queue (with its DLQ) and the notifier's event source."""
        queue = spec.NOTIFY_QUEUE
        dlq_url = client("sqs").create_queue(QueueName=NAMES["notify_dlq"])["QueueUrl"]
        redrive = {"deadLetterTargetArn": self._queue_arn(dlq_url), "maxReceiveCount": str(queue.max_receive_count)}
        url = client("sqs").create_queue(
            QueueName=NAMES["notify_queue"],
            Attributes={
                # Short locally, as the tests' jobs queue: a failed batch comes back in seconds.
                "VisibilityTimeout": str(
                    min(queue.visibility_timeout_seconds, self.queue_spec.visibility_timeout_seconds)
                ),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        os.environ[spec.RESOURCE_ENV["notify_queue"]] = url
        get_settings.cache_clear()
        self.notify_queue_url, self.notify_dlq_url = url, dlq_url
        self.notify_source = SqsEventSource(
            self.runtime.invoke, "notifier", url, self._queue_arn(url), queue.batch_size
        )
        self._workers.append(self.notify_source)
        self.notify_source.start()

    def _queue_arn(self, url: str) -> str:
        return client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def _start_event_sources(self) -> None:
        assert self.resources
        # As the event source mapping does, QUEUE_MAX_CONCURRENCY dispatchers at once, each pacing
        # itself to its share of DISPATCH_RATE_PER_SECOND.
        self.dispatch_sources = [
            SqsEventSource(
                self.runtime.invoke,
                "dispatcher",
                self.resources.queue_url,
                self.resources.queue_arn,
                self.queue_spec.batch_size,
            )
            for _ in range(self.queue_spec.max_concurrency)
        ]
        self.execution_events = ExecutionStatusEvents(
            self.runtime.invoke, "finalizer", self.resources.state_machine_arn
        )
        stream_arn = client("dynamodb").describe_table(TableName=self.resources.table)["Table"]["LatestStreamArn"]
        stream = spec.COUNTER_STREAM
        self.counters = StreamEventSource(
            self.runtime.invoke,
            "counters",
            stream_arn,
            batch_size=stream.batch_size,
            window_seconds=self.stream_window_seconds,
            retry_attempts=stream.retry_attempts,
            filters=stream.filters,
        )
        self._workers = [*self.dispatch_sources, self.execution_events, self.counters]
        for worker in self._workers:
            worker.start()


def collect_less() -> None:
    """The emulation keeps every item, message, object and execution in this process for its whole
    life: after a 1,000-job burst, 750,000 objects that Python's collector rescanned at each full
    collection (a tenth of the CPU of the burst's last jobs). Leave what startup built (moto's and
    botocore's models, the handlers) out of collections for good, and collect the young generation
    less often: each request allocates thousands of short-lived objects."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


# Routes without the key authorizer (deployed the same): health and the docs (IAM when deployed).
PUBLIC_PATHS = ("/health", "/docs", "/openapi.json")


class LocalAuthorizer:
    """With API_AUTH=keys, what API Gateway does on a key-authorized route: no Authorization
    header is a 401 before any function runs; otherwise the deployed authorizer function decides,
    run by the emulated Lambda runtime. Deployed, API Gateway caches its answer per Authorization
    value (infra/constructs/api.py KEY_CACHE_SECONDS); locally `cache_seconds` is 0 (a revoked key
    stops at once) unless set, as `make cost` does to count the invocations a deployment makes."""

    def __init__(self, runtime: LambdaRuntime, cache_seconds: float = 0) -> None:
        self.runtime = runtime
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> dict[str, Any] | None:
        path = event["rawPath"]
        if get_settings().api_auth != "keys" or not path.startswith("/api/") or path.startswith(PUBLIC_PATHS):
            return None
        identity = event["headers"].get("authorization")
        if not identity:
            return {"isAuthorized": False, "missing": True}
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(identity)
        if cached and now - cached[0] < self.cache_seconds:
            return cached[1]
        answer = self.runtime.invoke("authorizer", self._event(event, identity))
        if self.cache_seconds:
            with self._lock:
                self._cache[identity] = (now, answer)
        return answer

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    @staticmethod
    def _event(event: dict[str, Any], identity: str) -> dict[str, Any]:
        method, path = event["requestContext"]["http"]["method"], event["rawPath"]
        return {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:local/$default/{method}{path}",
            "identitySource": [identity],
            "routeKey": event["routeKey"],
            "rawPath": path,
            "rawQueryString": event["rawQueryString"],
            "headers": event["headers"],
            "queryStringParameters": event.get("queryStringParameters"),
            "requestContext": event["requestContext"],
        }


def with_queue(**changes: Any) -> spec.QueueSpec:
    """The spec's queue with some settings changed (tests shorten the visibility timeout)."""
    return replace(spec.QUEUE, **changes)
