"""The emulated Lambda runtime: each invocation starts with clean handler state, and concurrent
invocations never share a resolver, a batch processor or logger keys (one event per container)."""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

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
