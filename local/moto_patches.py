"""Patches to moto (5.2.x), applied once per process by the emulation (local/emulator.py).

Two kinds, and nothing else: where moto behaves unlike AWS (a race, a missing lock), make it behave
as AWS does; where moto pays per request for work that AWS does not (parsing the same workflow for
every execution, walking a whole queue for one attribute), do that work once, answering exactly as
before. Without the second kind a burst on `make dev` drained at a third of
DISPATCH_RATE_PER_SECOND, its CPU spent inside moto (`make load`). Each has a test in
tests/integration/test_local_runtime.py.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
from typing import Any

log = logging.getLogger("local.moto_patches")

_applied = False
_lock = threading.Lock()
# moto's DynamoDB writes, and its stream reads, under one lock: see serialize_dynamodb_writes.
DYNAMODB_WRITE_LOCK = threading.RLock()


def apply() -> None:
    """Apply every patch (idempotent: tests start several emulations in one process)."""
    global _applied
    with _lock:
        if _applied:
            return
        check_callback_outcome_first()
        match_tokens_to_started_executions()
        report_execution_ends()
        roll_back_transactions_by_item()  # before the write lock: its backup must be taken under it
        serialize_dynamodb_writes()
        read_streams_under_the_write_lock()
        honour_transaction_tokens()
        pass_task_failure_causes()
        parse_each_workflow_once()
        reuse_workflow_lambda_clients()
        parse_each_json_path_once()
        read_queue_clock_cheaply()
        find_backends_without_a_lock()
        parse_each_update_expression_once()
        find_response_members_once()
        serialize_dynamodb_values_as_stored()
        _applied = True


# ---- where moto differs from AWS -----------------------------------------------------------------
def check_callback_outcome_first() -> None:
    """moto misses a task-token callback that arrives while the invoked Lambda still runs (AWS
    accepts it: our worker calls back before it returns) when the state has HeartbeatSeconds: it
    starts waiting for a heartbeat without looking at the outcome it already has. Look first."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as callback,
    )

    waiter = callback.StateTaskServiceCallback
    original = waiter._wait_for_task_token_heartbeat

    def wait(self, env, callback_endpoint, heartbeat_endpoint):
        return callback_endpoint.get_outcome() or original(self, env, callback_endpoint, heartbeat_endpoint)

    waiter._wait_for_task_token_heartbeat = wait


def match_tokens_to_started_executions() -> None:
    """moto lists a new execution before it starts it (no status, no program yet), so a call that
    reads the executions in that window failed with a 500: SendTaskSuccess, SendTaskFailure and
    SendTaskHeartbeat (they read every execution's status and callbacks; seen under a burst: a
    worker's callback retried by botocore), ListExecutions, DescribeExecution. On AWS an execution
    is RUNNING once StartExecution returns, and a task token only exists once its state runs: an
    execution is RUNNING from its creation, and tokens are looked for among started executions."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import Execution
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    created = Execution.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        created(self, *args, **kwargs)
        self.exec_status = ExecutionStatus.RUNNING

    def started(execution: Any) -> bool:
        worker = execution.exec_worker
        return worker is not None and worker.env is not None

    def _get_executions(self: Any, execution_status: Any = None) -> list[Any]:
        return [
            execution
            for machine in self.state_machines
            for execution in list(machine.executions)
            if started(execution) and (execution_status is None or execution_status == execution.status)
        ]

    Execution.__init__ = __init__
    StepFunctionsParserBackend._get_executions = _get_executions


def report_execution_ends() -> None:
    """Tell the emulated EventBridge rule when an execution ends (where moto records its status)."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication as comm

    from local.event_sources import execution_ended

    original = comm.terminated

    def terminated(self: Any) -> None:
        original(self)
        try:
            execution_ended(self.execution.to_describe_output())
        except Exception:
            log.exception("could not report the end of an execution")

    comm.terminated = terminated


def serialize_dynamodb_writes() -> None:
    """moto checks a write's condition and applies it without a lock, so two threads' conditional
    writes can both pass (seen here: cancel and complete both "won"). DynamoDB serializes writes
    to an item; one lock around moto's write operations gives the same guarantee."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = DYNAMODB_WRITE_LOCK
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def serialized(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        setattr(DynamoDBBackend, name, serialized)


def read_streams_under_the_write_lock() -> None:
    """moto applies a transaction's items one by one, each adding its stream record, and undoes
    them if one fails (roll_back_transactions_by_item, which also drops those records): a reader
    must never see the records of a transaction in progress. DynamoDB streams only committed changes."""
    from moto.dynamodb.models.table import StreamShard

    original = StreamShard.get

    def get(shard: Any, start: int, quantity: int) -> Any:
        with DYNAMODB_WRITE_LOCK:
            return original(shard, start, quantity)

    StreamShard.get = get


def honour_transaction_tokens() -> None:
    """moto ignores TransactWriteItems' ClientRequestToken. DynamoDB remembers a token for 10
    minutes: the same transaction again succeeds without writing anything (the counters function
    relies on it when Lambda retries a batch); other items with it are refused."""
    import hashlib
    import json

    from moto.core.responses import ActionResult
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.transact_write_items
    seen: dict[str, tuple[str, float]] = {}
    lock = threading.Lock()

    def transact_write_items(handler: Any) -> Any:
        token = handler.body.get("ClientRequestToken")
        if not token:
            return original(handler)
        digest = hashlib.sha256(json.dumps(handler.body["TransactItems"], sort_keys=True).encode()).hexdigest()
        now = time.monotonic()
        with lock:
            known = seen.get(token)
            if known and now - known[1] < 600:
                if known[0] != digest:
                    raise DynamodbException(
                        ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
                        "The token was used with other items",
                    )
                return ActionResult({"ConsumedCapacity": [], "ItemCollectionMetrics": {}})
        result = original(handler)
        with lock:
            seen[token] = (digest, now)
        return result

    DynamoHandler.transact_write_items = transact_write_items


def pass_task_failure_causes() -> None:
    """moto's SendTaskFailure drops the `cause` on its way from the request to the execution (the
    state's Catch then sees `"Cause": null`); AWS passes it on. Pass it."""
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure


# ---- work moto repeats per request -----------------------------------------------------------------
def roll_back_transactions_by_item() -> None:
    """moto backs up every table a transaction touches with a deep copy of the whole table, so
    each submit (one transaction) costs O(table) CPU and memory, and the copies outlive the call
    (1.2 GB after 200 jobs). Back up only the items the transaction names, and restore those."""
    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    class _TableAsIs:  # moto's `copy` during a transaction: a Table is "copied" as itself
        @staticmethod
        def deepcopy(obj: Any, *args: Any) -> Any:
            return obj if isinstance(obj, Table) else copy.deepcopy(obj, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

    dynamodb_models.copy = _TableAsIs()
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = []
        for entry in transact_items:
            for op in entry.values():
                if "TableName" not in op or op["TableName"] not in backend.tables:
                    continue
                table = backend.tables[op["TableName"]]
                attrs = op.get("Key") or op.get("Item") or {}
                key = {k: attrs[k] for k in (table.hash_key_attr, table.range_key_attr) if k and k in attrs}
                try:
                    hash_key, range_key = backend.get_keys_value(table, key)
                    current = table.get_item(hash_key, range_key)
                except Exception:  # an invalid key: moto refuses the transaction before writing
                    continue
                saved = current.to_json()["Attributes"] if current else None
                backups.append((table, hash_key, range_key, saved))
        streamed = {id(t): (t, len(t.stream_shard.items)) for t, *_ in backups if t.stream_shard is not None}
        try:
            return original(backend, transact_items)
        except Exception:
            for table, hash_key, range_key, saved in reversed(backups):
                if saved is None:
                    table.delete_item(hash_key, range_key)
                else:
                    table.put_item(saved)
            for table, length in streamed.values():  # a cancelled transaction streams nothing
                del table.stream_shard.items[length:]
            raise

    DynamoDBBackend.transact_write_items = transact_write_items


def find_backends_without_a_lock() -> None:
    """Every moto request looks its service's backend up (`dynamodb_backends[account][region]`),
    and moto took one process-wide lock for each lookup, to create the account's backends if they
    were missing: under a burst every request thread queued on it. Take the lock only to create."""
    from moto.core.base_backend import BackendDict

    original = BackendDict.__getitem__

    def __getitem__(self: Any, account_id: str) -> Any:
        if dict.__contains__(self, account_id):  # created, and registered for resets, under the lock
            return dict.__getitem__(self, account_id)
        return original(self, account_id)

    BackendDict.__getitem__ = __getitem__


def parse_each_update_expression_once() -> None:
    """moto tokenizes and parses an UpdateExpression twice per UpdateItem (and per transaction
    update), though the service sends a handful of distinct expressions. The parsed tree is only
    read, and copied before it is resolved against an item (moto's validator takes a deep copy):
    parse each expression once."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    UpdateExpressionParser.make = classmethod(functools.lru_cache(maxsize=1024)(UpdateExpressionParser.make.__func__))


def parse_each_workflow_once() -> None:
    """moto runs every execution on a fresh parse of its definition (ANTLR: about 40 ms of CPU
    each, a sixth of a mock job's). The parsed program holds no execution state (that lives in
    each execution's Environment), so executions of one definition share one parse, as they share
    the definition. A changed definition (UpdateStateMachine) is another key."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    @functools.lru_cache(maxsize=16)
    def program(definition: str) -> Any:
        return AmazonStateLanguageParser.parse(definition)[0]

    def entrypoint(self: Any) -> Any:
        return program(self._evaluation_details.state_machine_details.definition)

    ExecutionWorker._get_evaluation_entrypoint = entrypoint


def reuse_workflow_lambda_clients() -> None:
    """moto creates a new boto3 Lambda client for every Lambda task it runs (loading the service
    model each time). Keep one per session and region: boto3 clients are thread-safe, and the
    credentials moto passes are fixed. Keyed on boto3's default session, which the emulation
    replaces (with its Invoke hook) at each start."""
    import boto3
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    original = lambda_eval_utils.boto_client_for
    clients: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (boto3.DEFAULT_SESSION, region, service)
        with lock:
            if key not in clients:
                clients.clear()  # a new session: the old clients are stale
                clients[key] = original(region=region, service=service, state_credentials=state_credentials)
            return clients[key]

    lambda_eval_utils.boto_client_for = boto_client_for


def parse_each_json_path_once() -> None:
    """moto's Step Functions parses a JSONPath (`$.job_id`) each time a state evaluates it, and
    jsonpath_ng builds a new PLY lexer and parser for every parse. The parsed expressions are
    immutable (find and update take the data as an argument): parse each path once."""
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    json_path.parse = functools.lru_cache(maxsize=512)(json_path.parse)
    result_path.parse = functools.lru_cache(maxsize=512)(result_path.parse)


def read_queue_clock_cheaply() -> None:
    """moto's SQS walks every message of a queue on each receive (visible? delayed?), reading the
    clock through two naive datetimes per message, and reads one queue attribute per message
    received by computing all of them (three more walks): with 1,000 jobs queued, each receive
    cost tens of milliseconds. Read the same clock as a float, and the retention period directly."""
    from moto.sqs import models as sqs

    sqs.unix_time = lambda dt=None: time.time() if dt is None else _unix_time(dt)
    sqs.unix_time_millis = lambda dt=None: sqs.unix_time(dt) * 1000.0

    def retained(backend: Any, queue_name: str, message: Any) -> bool:
        retention = int(backend.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > time.time()

    sqs.SQSBackend.is_message_valid_based_on_retention_period = retained


def _unix_time(dt: Any) -> float:
    from moto.core.utils import unix_time

    return unix_time(dt)


def find_response_members_once() -> None:
    """moto serializes each response member by asking six alias providers (each a new object) which
    attribute names might hold it: for a DynamoDB item, ten names per attribute value, for every
    value of every item returned (a tenth of a job's CPU). The answer depends only on the picker,
    the value's type, the member and its shape: work it out once per combination."""
    from moto.core import serialize

    original = serialize.AttributePicker.get_possible_keys
    found: dict[tuple[Any, ...], tuple[tuple[str, ...], Any]] = {}

    def get_possible_keys(self: Any, context: Any) -> Any:
        shape = context.shape
        parent = getattr(shape, "parent", None)
        key = (type(self), tuple(self.alias_providers), type(context.obj), context.key, id(shape), id(parent))
        cached = found.get(key)
        if cached is None:
            # The shapes are kept with the answer, so their ids cannot be reused by other shapes.
            cached = found[key] = (tuple(original(self, context)), (shape, parent))
        return cached[0]

    serialize.AttributePicker.get_possible_keys = get_possible_keys


_SCALARS = {"S": str, "N": str, "BOOL": bool, "NULL": bool}


def _attribute_value(value: Any) -> Any:
    """A DynamoDB AttributeValue as moto holds it (already its wire form), checked; None for anything
    else (a binary value, an unexpected shape): moto's serializer handles those."""
    if type(value) is not dict or len(value) != 1:
        return None
    [(kind, inner)] = value.items()
    if kind in _SCALARS:
        return value if type(inner) is _SCALARS[kind] else None
    if kind in ("SS", "NS"):
        return value if type(inner) is list and all(type(v) is str for v in inner) else None
    if kind == "M" and type(inner) is dict:
        members = {name: _attribute_value(v) for name, v in inner.items()}
        return None if any(v is None for v in members.values()) else {"M": members}
    if kind == "L" and type(inner) is list:
        items = [_attribute_value(v) for v in inner]
        return None if any(v is None for v in items) else {"L": items}
    return None


def serialize_dynamodb_values_as_stored() -> None:
    """moto walks every DynamoDB AttributeValue of a response through its generic serializer, member
    by member (ten per value), to produce the JSON it already holds: a job's item took 5 ms per
    GetItem. An AttributeValue that is plain JSON (strings, numbers, booleans, nulls, lists and
    maps of them) is written as it is; anything else (binary) still goes through the serializer."""
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure

    def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue":
            plain = _attribute_value(value)
            if plain is not None:
                self._default_serialize(serialized, plain, shape, key)
                return
        original(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure
