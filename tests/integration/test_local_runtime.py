"""The emulated Lambda runtime: each invocation starts with clean handler state, and concurrent
invocations never share a resolver, a batch processor or logger keys (one event per container)."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from local.emulator import Emulator
from local.gateway import http_api_event
from shared.observability import logger
from tests.conftest import unique_prompt


def api_event(method: str, path: str, body: dict | str | None = None) -> dict:
    data = (body if isinstance(body, str) else json.dumps(body)).encode() if body is not None else b""
    return http_api_event(method, path, {"content-type": "application/json"}, data, "127.0.0.1")


def test_a_warm_api_function_does_not_carry_the_previous_requests_job_id(emulator: Emulator) -> None:
    # Given a request that logged with its job's id
    submitted = emulator.runtime.invoke("api", api_event("POST", "/api/v1/generate", {"prompt": unique_prompt()}))
    assert submitted["statusCode"] == 202
    assert logger.get_current_keys().get("job_id") == json.loads(submitted["body"])["job_id"]

    # When the same (warm) container serves another request on the same thread
    assert emulator.runtime.invoke("api", api_event("GET", "/health"))["statusCode"] == 200

    # Then its keys are its own: no job id, a new request id
    keys = logger.get_current_keys()
    assert "job_id" not in keys
    assert keys["function_request_id"]


def test_concurrent_invocations_each_get_their_own_route_and_status(emulator: Emulator) -> None:
    # Given three routes with three different answers
    cases = [
        (("GET", "/health", None), 200),
        (("GET", "/api/v1/status/no-such-job", None), 404),
        (("POST", "/api/v1/generate", {"prompt": ""}), 422),
    ]
    barrier = threading.Barrier(12)

    def call(i: int) -> tuple[int, int]:
        (method, path, body), expected = cases[i % len(cases)]
        barrier.wait(timeout=30)
        return emulator.runtime.invoke("api", api_event(method, path, body))["statusCode"], expected

    # When 12 threads invoke the api function at once, several rounds
    with ThreadPoolExecutor(12) as pool:
        results = [r for _ in range(20) for r in pool.map(call, range(12))]

    # Then every request got its own route's status, from containers that ran one event at a time
    assert [got for got, _ in results] == [expected for _, expected in results]
    assert emulator.runtime.containers["api"] > 1


def test_a_transaction_neither_copies_the_table_nor_keeps_copies_but_still_rolls_back(emulator: Emulator) -> None:
    """moto backed up a whole table per transaction (O(table) per submit, copies kept: 1.2 GB after
    200 jobs); the emulation backs up the items a transaction names, and rolls those back."""
    import gc

    from botocore.exceptions import ClientError
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import Item

    from shared.aws import client

    assert emulator.resources
    name = emulator.resources.table
    backend = dynamodb_backends["123456789012"]["us-east-1"]
    table = backend.tables[name]
    dynamodb, prefix = client("dynamodb"), unique_prompt("txn")

    def put(key: str, condition: str | None = None) -> dict:
        op = {"TableName": name, "Item": {"pk": {"S": f"{prefix}-{key}"}, "v": {"S": "new"}}}
        return {"Put": op | ({"ConditionExpression": condition} if condition else {})}

    gc.collect()
    before = sum(type(o) is Item for o in gc.get_objects())
    for i in range(30):
        dynamodb.transact_write_items(TransactItems=[put(f"a{i}"), put(f"b{i}")])
    gc.collect()
    assert sum(type(o) is Item for o in gc.get_objects()) - before < 200  # 60 new items, no table copies

    dynamodb.put_item(TableName=name, Item={"pk": {"S": f"{prefix}-kept"}, "v": {"S": "old"}})
    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(TransactItems=[put("kept"), put("fresh"), put("a0", "attribute_not_exists(pk)")])
    assert backend.tables[name] is table
    get = dynamodb.get_item
    assert get(TableName=name, Key={"pk": {"S": f"{prefix}-kept"}})["Item"]["v"] == {"S": "old"}
    assert "Item" not in get(TableName=name, Key={"pk": {"S": f"{prefix}-fresh"}})
    for i in range(30):
        dynamodb.delete_item(TableName=name, Key={"pk": {"S": f"{prefix}-a{i}"}})
        dynamodb.delete_item(TableName=name, Key={"pk": {"S": f"{prefix}-b{i}"}})
    dynamodb.delete_item(TableName=name, Key={"pk": {"S": f"{prefix}-kept"}})


def test_an_ended_execution_reaches_the_finalizer_without_listing_every_execution(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status-change rule was emulated by listing and describing every execution ever run,
    every 0.5 s (O(n) per poll under a burst); moto now reports each execution's end."""
    from moto.stepfunctions.models import StepFunctionBackend

    from shared.aws import client
    from tests.conftest import wait_for

    def no_listing(*_: object, **__: object) -> None:
        raise AssertionError("the emulated rule listed executions")

    delivered: list[dict] = []
    monkeypatch.setattr(StepFunctionBackend, "list_executions", no_listing)
    monkeypatch.setattr(emulator.execution_events, "_deliver", lambda e: delivered.append(e) or True)
    assert emulator.resources
    sfn = client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=emulator.resources.state_machine_arn,
        name=unique_prompt("ended").replace(" ", "-")[:60],
        input=json.dumps({"job_id": "not-a-job", "attempt": 1}),
    )["executionArn"]
    with contextlib.suppress(sfn.exceptions.ClientError):  # it soon fails on its own (no such job)
        sfn.stop_execution(executionArn=arn, error="Test", cause="stopped by the test")
    [execution] = wait_for(lambda: [e for e in delivered if e["executionArn"] == arn], what="the status event")
    assert execution["status"] in ("ABORTED", "FAILED")


# ---- what the emulation does per request: nothing that grows with the burst ----------------------
def _run_jobs(api: httpx.Client, count: int) -> None:
    """Submit `count` jobs through the API and wait until each completed (the whole pipeline)."""
    from tests.conftest import wait_for

    ids = [
        api.post("/api/v1/generate", json={"prompt": unique_prompt("shared")}).json()["job_id"] for _ in range(count)
    ]
    wait_for(
        lambda: all(api.get(f"/api/v1/status/{job_id}").json()["status"] == "completed" for job_id in ids),
        what="the jobs to complete",
    )


def test_executions_share_one_parse_of_the_workflow_its_paths_and_one_lambda_client(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto parsed the definition (ANTLR), each JSONPath (a new PLY parser each time) and built a
    boto3 Lambda client for every execution and Lambda task: a third of a mock job's CPU."""
    import botocore.session
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.utils import json_path

    counts = {"definition": 0, "path": 0, "lambda client": 0}

    def counting(name: str, original, *, static: bool = False):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)

        return staticmethod(wrapper) if static else wrapper

    def create_client(self, service_name, *args, **kwargs):
        counts["lambda client"] += service_name == "lambda"
        return real_create_client(self, service_name, *args, **kwargs)

    real_create_client = botocore.session.Session.create_client
    _run_jobs(api, 1)  # whatever is parsed or created once, it is done now
    monkeypatch.setattr(
        AmazonStateLanguageParser, "parse", counting("definition", AmazonStateLanguageParser.parse, static=True)
    )
    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)

    def path_parses() -> int:  # each JSONPath parse that was not answered from the cache
        return json_path.parse.cache_info().misses + result_path.parse.cache_info().misses

    parsed = path_parses()
    _run_jobs(api, 4)

    counts["path"] = path_parses() - parsed
    assert counts == {"definition": 0, "path": 0, "lambda client": 0}


def test_calls_during_another_executions_start_are_not_server_errors(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto lists an execution before starting it; a SendTaskSuccess (a worker's callback, under a
    burst), ListExecutions or DescribeExecution arriving in between read its missing status and
    answered 500. On AWS it is RUNNING from StartExecution on, and an unknown token is InvalidToken."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.backend.execution import Execution
    from moto.stepfunctions.responses import get_backend

    from shared.aws import client

    assert emulator.resources
    machine_arn = emulator.resources.state_machine_arn
    sfn = client("stepfunctions")
    with monkeypatch.context() as starting:  # an execution caught between being listed and started
        starting.setattr(Execution, "start", lambda self: None)
        arn = sfn.start_execution(
            stateMachineArn=machine_arn,
            name=f"{uuid.uuid4()}-1",
            input=json.dumps({"job_id": "no-such-job", "attempt": 1}),
        )["executionArn"]
    try:
        for call in (
            lambda: sfn.send_task_success(taskToken="not-a-token", output="{}"),
            lambda: sfn.send_task_failure(taskToken="not-a-token", error="E", cause="c"),
            lambda: sfn.send_task_heartbeat(taskToken="not-a-token"),
        ):
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.response["Error"]["Code"] in ("InvalidToken", "TaskDoesNotExist")
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        listed = sfn.list_executions(stateMachineArn=machine_arn, maxResults=1000)["executions"]
        assert [e["status"] for e in listed if e["executionArn"] == arn] == ["RUNNING"]
    finally:  # it will never run: take it away
        for machine in get_backend("123456789012", "us-east-1").state_machines:
            machine.executions[:] = [e for e in machine.executions if e.execution_arn != arn]


def test_receiving_from_a_deep_queue_reads_neither_the_datetime_clock_nor_every_attribute(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's SQS walks the whole queue on each receive: it read the clock through two datetimes
    per message, and computed every queue attribute (three more walks) per message received. With
    1,000 jobs queued, each dispatcher receive cost tens of milliseconds."""
    import moto.core.utils
    from moto.sqs.models import Queue, sqs_backends

    from shared.aws import client

    sqs = client("sqs")
    url = sqs.create_queue(QueueName=unique_prompt("deep").replace(" ", "-"))["QueueUrl"]
    try:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "{}"} for i in range(10)])
        for _ in range(19):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "{}"} for i in range(10)])
        backend = sqs_backends["123456789012"]["us-east-1"]
        clock_reads, attribute_reads = [], []
        utcnow = moto.core.utils.utcnow
        this_thread = threading.get_ident()  # not the emulation's pollers, meanwhile

        def counted_utcnow():
            if threading.get_ident() == this_thread:
                clock_reads.append(1)
            return utcnow()

        monkeypatch.setattr(moto.core.utils, "utcnow", counted_utcnow)
        attributes = Queue.attributes
        monkeypatch.setattr(Queue, "attributes", property(lambda q: attribute_reads.append(1) or attributes.fget(q)))

        received = backend.receive_message(url.rsplit("/", 1)[1], 5, 0, 30)

        assert len(received) == 5
        assert len(clock_reads) < 20  # was 2 per queued message (400 here)
        assert attribute_reads == []
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_aws_calls_reach_moto_in_process_and_answer_as_its_server_does(emulator: Emulator) -> None:
    """Each AWS call went through a socket, HTTP on both sides and a server thread to moto in this
    same process (half a job's CPU under a burst). The in-process path must answer exactly as the
    server: same data, same errors, binary bodies and metadata intact."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from shared.aws import client

    assert emulator.resources
    over_http = boto3.session.Session()  # a session without the emulation's hooks: real HTTP
    config = Config(retries={"max_attempts": 1}, signature_version="s3v4")

    def http(service: str):
        return over_http.client(service, endpoint_url=emulator.endpoint, region_name="us-east-1", config=config)

    table, bucket, key = emulator.resources.table, emulator.resources.bucket, unique_prompt("obj").replace(" ", "-")
    body = bytes(range(256)) * 64
    before = emulator.transport.calls

    in_process = client("s3")
    in_process.put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/png", Metadata={"seed_value": "7"})
    for s3 in (in_process, http("s3")):
        got = s3.get_object(Bucket=bucket, Key=key)
        assert (got["Body"].read(), got["ContentType"], got["Metadata"]) == (body, "image/png", {"seed_value": "7"})
        with pytest.raises(ClientError) as missing:
            s3.get_object(Bucket=bucket, Key=key + "-missing")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    in_process.delete_object(Bucket=bucket, Key=key)

    item = {"pk": {"S": f"transport-{key}"}, "n": {"N": "1"}}
    client("dynamodb").put_item(TableName=table, Item=item)
    for dynamodb in (client("dynamodb"), http("dynamodb")):
        assert dynamodb.get_item(TableName=table, Key={"pk": item["pk"]})["Item"] == item
        with pytest.raises(ClientError) as exists:
            dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        assert exists.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    client("dynamodb").delete_item(TableName=table, Key={"pk": item["pk"]})

    queue = client("sqs").create_queue(QueueName=key)["QueueUrl"]
    assert queue == http("sqs").get_queue_url(QueueName=key)["QueueUrl"]  # the same URL either way
    client("sqs").send_message(QueueUrl=queue, MessageBody="héllo")
    assert http("sqs").receive_message(QueueUrl=queue)["Messages"][0]["Body"] == "héllo"
    client("sqs").delete_queue(QueueUrl=queue)

    assert emulator.transport.calls - before >= 10


def test_the_emulation_leaves_its_startup_state_out_of_garbage_collections(emulator: Emulator) -> None:
    """After a burst the process holds every item, message and execution; full collections that
    rescanned them all (and moto's and botocore's models) cost a tenth of the last jobs' CPU."""
    import gc

    assert gc.get_freeze_count() > 100_000
    assert gc.get_threshold()[0] >= 10_000


def test_dynamodb_items_come_back_exactly_and_without_a_member_by_member_walk(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto serialized every AttributeValue of a response member by member (ten members, six alias
    providers each): 5 ms per GetItem of a job's item. Values that are plain JSON are now written as
    moto holds them; binary ones still take moto's serializer. Either way the item round-trips."""
    from moto.core.serialize import AttributePicker, NoAlias

    from shared.aws import client

    assert emulator.resources
    dynamodb, table = client("dynamodb"), emulator.resources.table
    item = {
        "pk": {"S": f"values-{uuid.uuid4()}"},
        "text": {"S": "héllo"},
        "empty": {"S": ""},
        "number": {"N": "-12.5"},
        "yes": {"BOOL": True},
        "no": {"BOOL": False},
        "nothing": {"NULL": True},
        "strings": {"SS": ["a", "b"]},
        "numbers": {"NS": ["1", "2.5"]},
        "map": {"M": {"inner": {"L": [{"S": "x"}, {"N": "1"}, {"M": {}}, {"L": []}]}, "flag": {"BOOL": False}}},
        "binary": {"B": b"\x00\xff"},
        "binaries": {"BS": [b"\x01", b"\x02"]},
        "nested_binary": {"M": {"blob": {"B": b"\x03"}}},
    }
    dynamodb.put_item(TableName=table, Item=item)
    picks = []
    real_pick, this_thread = AttributePicker.__call__, threading.get_ident()

    def pick(self: AttributePicker, context: object) -> object:
        if threading.get_ident() == this_thread:  # not the emulation's pollers, meanwhile
            picks.append(1)
        return real_pick(self, context)

    monkeypatch.setattr(AttributePicker, "__call__", pick)

    assert dynamodb.get_item(TableName=table, Key={"pk": item["pk"]})["Item"] == item
    plain = {k: v for k, v in item.items() if "binar" not in k}
    dynamodb.put_item(TableName=table, Item=plain)
    picks.clear()
    assert dynamodb.get_item(TableName=table, Key={"pk": item["pk"]})["Item"] == plain
    assert len(picks) < 10  # was 10 per AttributeValue (about 180 here)

    def key_lookups() -> int:
        """This thread's lookups (the in-process transport serves its calls on it); the emulation's
        pollers serialize their own responses meanwhile, some shapes for the first time."""
        calls = []

        def has_alias(self: NoAlias, key: str) -> bool:
            if threading.get_ident() == this_thread:
                calls.append(key)
            return True

        monkeypatch.setattr(NoAlias, "has_alias", has_alias)
        client("sqs").get_queue_attributes(QueueUrl=emulator.resources.queue_url, AttributeNames=["All"])
        return len(calls)

    key_lookups()
    assert key_lookups() == 0  # the member -> attribute names answer of each response shape is kept
    dynamodb.delete_item(TableName=table, Key={"pk": item["pk"]})


def test_an_update_parses_its_expression_once_and_finds_its_backend_without_a_lock(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto tokenized each UpdateExpression twice per UpdateItem, and took one process-wide lock
    for every backend lookup (several per request): under a burst, every request thread queued."""
    import moto.core.base_backend
    from moto.dynamodb.parsing.tokens import ExpressionTokenizer

    from shared.aws import client

    assert emulator.resources
    table, key = emulator.resources.table, {"pk": {"S": f"expr-{uuid.uuid4()}"}}
    attribute = f"a{uuid.uuid4().hex[:8]}"  # an expression this process has never parsed
    tokenized, locked = [], []
    make_list = ExpressionTokenizer.make_list
    monkeypatch.setattr(
        ExpressionTokenizer, "make_list", lambda text: (attribute in text and tokenized.append(text)) or make_list(text)
    )  # this test's expression only: the emulation's functions may update jobs meanwhile

    class CountingLock:
        def __init__(self, lock) -> None:
            self.lock = lock

        def __enter__(self):
            locked.append(1)
            return self.lock.__enter__()

        def __exit__(self, *exc):
            return self.lock.__exit__(*exc)

    monkeypatch.setattr(moto.core.base_backend, "backend_lock", CountingLock(moto.core.base_backend.backend_lock))

    for value in range(3):
        client("dynamodb").update_item(
            TableName=table,
            Key=key,
            UpdateExpression=f"SET {attribute} = :v",
            ExpressionAttributeValues={":v": {"N": str(value)}},
        )

    assert len(tokenized) == 1  # was 2 per update
    assert locked == []
    client("dynamodb").delete_item(TableName=table, Key=key)
