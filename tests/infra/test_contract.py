"""Contract: the emulation that `make dev` and the tests run on has the same resources as the
synthesized template (table keys and indexes, queue settings, event sources, workflow definition).
Both are built from infra/spec.py; this proves neither side drifted from it."""

from __future__ import annotations

import json
from dataclasses import replace

from infra import spec
from local.emulator import Emulator
from local.lambdas import function_arn
from shared.aws import client

from .conftest import Synthesized
from .test_resources import function
from .workflow_helpers import at, normalized, placeholder_paths, render, rendered_substitutions


def key_schema(keys: list[dict]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in keys]


def table_shape(table: dict, ttl_attribute: str) -> dict:
    return {
        "keys": key_schema(table["KeySchema"]),
        "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]),
        "indexes": sorted(
            (i["IndexName"], tuple(key_schema(i["KeySchema"])), i["Projection"]["ProjectionType"])
            for i in table["GlobalSecondaryIndexes"]
        ),
        "ttl": ttl_attribute,
        "stream": (table.get("StreamSpecification") or {}).get("StreamViewType"),
    }


def test_table(emulator: Emulator, dev: Synthesized) -> None:
    assert emulator.resources
    dynamodb = client("dynamodb")
    emulated = dynamodb.describe_table(TableName=emulator.resources.table)["Table"]
    ttl = dynamodb.describe_time_to_live(TableName=emulator.resources.table)["TimeToLiveDescription"]
    _, deployed = dev.resource("AWS::DynamoDB::Table")
    props = deployed["Properties"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert props["TimeToLiveSpecification"]["Enabled"] is True
    assert table_shape(emulated, ttl["AttributeName"]) == table_shape(
        props, props["TimeToLiveSpecification"]["AttributeName"]
    )
    assert len(emulated["GlobalSecondaryIndexes"]) == len(spec.TABLE.indexes)


def test_queues(emulator: Emulator, dev: Synthesized) -> None:
    assert emulator.resources
    sqs = client("sqs")
    emulated = sqs.get_queue_attributes(QueueUrl=emulator.resources.queue_url, AttributeNames=["All"])["Attributes"]
    emulated_dlq = sqs.get_queue_attributes(QueueUrl=emulator.resources.dlq_url, AttributeNames=["All"])["Attributes"]
    emulated_redrive = json.loads(emulated["RedrivePolicy"])
    queues = dev.resources("AWS::SQS::Queue")
    ((_, deployed),) = [
        (k, q) for k, q in queues.items() if "RedrivePolicy" in q["Properties"] and k.startswith("Queue")
    ]
    deployed_dlq = queues[deployed["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]

    # Retention: the same on both sides.
    assert int(emulated["MessageRetentionPeriod"]) == deployed["Properties"]["MessageRetentionPeriod"]
    assert int(emulated_dlq["MessageRetentionPeriod"]) == deployed_dlq["Properties"]["MessageRetentionPeriod"]
    assert emulated_redrive["deadLetterTargetArn"] == emulated_dlq["QueueArn"]

    # The test session shortens the visibility timeout and the receives (poison messages reach the
    # DLQ in seconds): the emulated queue has its spec's values, and that spec is infra/spec.py's
    # apart from those two test settings, which the template has as in infra/spec.py.
    assert int(emulated["VisibilityTimeout"]) == emulator.queue_spec.visibility_timeout_seconds
    assert int(emulated_redrive["maxReceiveCount"]) == emulator.queue_spec.max_receive_count
    shortened = {"visibility_timeout_seconds", "max_receive_count"}
    assert replace(emulator.queue_spec, **{k: getattr(spec.QUEUE, k) for k in shortened}) == spec.QUEUE
    assert deployed["Properties"]["VisibilityTimeout"] == spec.QUEUE.visibility_timeout_seconds
    assert deployed["Properties"]["RedrivePolicy"]["maxReceiveCount"] == spec.QUEUE.max_receive_count


def test_event_sources(emulator: Emulator, dev: Synthesized) -> None:
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m for m in dev.resources("AWS::Lambda::EventSourceMapping").values()
    }
    for source in (emulator.dispatch_sources[0], emulator.notify_source):
        mapping = mappings.pop(function(dev, source.function)[0])
        assert mapping["Properties"]["BatchSize"] == source.batch_size
    # The table's stream: the same batches, filters and retries (the test session shortens the window).
    stream = mappings.pop(function(dev, emulator.counters.function)[0])["Properties"]
    assert stream["EventSourceArn"] == {"Fn::GetAtt": [dev.resource("AWS::DynamoDB::Table")[0], "StreamArn"]}
    assert stream["BatchSize"] == emulator.counters.batch_size
    assert stream["MaximumRetryAttempts"] == emulator.counters.retry_attempts
    assert [json.loads(f["Pattern"]) for f in stream["FilterCriteria"]["Filters"]] == list(emulator.counters.filters)
    assert stream["MaximumBatchingWindowInSeconds"] == spec.COUNTER_STREAM.max_batching_window_seconds
    assert not mappings  # every deployed event source is emulated
    _, rule = dev.resource("AWS::Events::Rule")
    assert rule["Properties"]["EventPattern"]["detail"]["status"] == list(emulator.execution_events.STATUSES)
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function(dev, emulator.execution_events.function)[0], "Arn"]}


def test_workflow_definition(emulator: Emulator, dev: Synthesized) -> None:
    """Same states, same structure, same everything but the values made from placeholders (the
    emulation's function ARNs are local, and the test session shortens timeouts and retries); and
    those that name functions name the same function on both sides."""
    assert emulator.resources
    emulated = json.loads(
        client("stepfunctions").describe_state_machine(stateMachineArn=emulator.resources.state_machine_arn)[
            "definition"
        ]
    )
    _, machine = dev.resource("AWS::StepFunctions::StateMachine")
    deployed = json.loads(render(machine["Properties"]["DefinitionString"], rendered_substitutions(machine)))
    paths = placeholder_paths(spec.WORKFLOW.definition.read_text())
    assert paths

    assert normalized(emulated, paths) == normalized(deployed, paths)
    functions = {f"<GetAtt:{function(dev, name)[0]}.Arn>": function_arn(name) for name in spec.FUNCTIONS}
    function_paths = [path for path in paths if path[-1] == "FunctionName"]
    assert function_paths
    for path in function_paths:
        assert functions[at(deployed, path)] == at(emulated, path)
