"""IAM least privilege: no wildcard action or resource in any Allow statement unless it is listed
below with the reason it cannot be narrower. Every action must exist, and an action that supports
no resource-level permission must be granted on "*" (a narrower statement would never match).

IAM's action data comes from cfn-lint (generated from AWS's Service Authorization Reference).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from .conftest import Synthesis, Synthesized
from .workflow_helpers import token_text

HASH = r"[0-9A-F]{8}"
FUNCTION_ROLE = rf"(Api|Dispatcher|Worker|Finalizer|Notifier|Authorizer|Webhook|Counters)FunctionRole{HASH}"


@dataclass(frozen=True)
class Justified:
    owner: str  # regex on the logical id of the role, managed policy or resource that holds it
    actions: frozenset[str]
    resource: str  # regex on the resource, intrinsics written as <Ref:X> / <GetAtt:X.Attr>
    reason: str


ALLOWED_WILDCARDS = (
    Justified(
        rf"CountersFunctionRole{HASH}",
        frozenset({"dynamodb:ListStreams"}),
        r"\*",
        "The table stream's event source mapping (CDK grants it): ListStreams supports no resource-level permissions.",
    ),
    Justified(
        FUNCTION_ROLE,
        frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        r"\*",
        "X-Ray tracing (traced invocations send their segments): these actions support no resource-level permissions.",
    ),
    Justified(
        rf"(Webhook|Worker)FunctionRole{HASH}",
        frozenset({"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}),
        r"\*",
        "Callback pattern (webhook and worker resume the Generate task): these actions support no "
        "resource-level permissions; the task token is the capability.",
    ),
    Justified(
        rf"(Api|Worker|Notifier)FunctionRole{HASH}",
        frozenset({"s3:GetObject", "s3:PutObject"}),
        rf"<GetAtt:StorageBucket{HASH}\.Arn>/outputs/\*",
        "Output keys are made per job attempt at run time (outputs/<job>/<attempt>/<n>.png): the "
        "worker writes them, the API and the notifier sign download URLs for them. Nothing outside outputs/.",
    ),
    Justified(
        rf"ApiFunctionRole{HASH}",
        frozenset({"states:StopExecution"}),
        r"arn:<Ref:AWS::Partition>:states:<Ref:AWS::Region>:<Ref:AWS::AccountId>:execution:"
        rf"<GetAtt:WorkflowStateMachine{HASH}\.Name>:\*",
        "Cancel stops the job's execution, named <job id>-<attempt> at run time: executions of this "
        "state machine only.",
    ),
    Justified(
        rf"WorkflowRole{HASH}",
        frozenset(
            {
                "logs:CreateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:DescribeLogGroups",
                "logs:DescribeResourcePolicies",
                "logs:GetLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:UpdateLogDelivery",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:PutTelemetryRecords",
                "xray:PutTraceSegments",
            }
        ),
        r"\*",
        "Step Functions logging to CloudWatch Logs and X-Ray tracing: AWS documents these with "
        "Resource '*' (log delivery and X-Ray support no resource-level permissions).",
    ),
    Justified(
        rf"ApiInvokePolicy{HASH}",
        frozenset({"execute-api:Invoke"}),
        rf"arn:<Ref:AWS::Partition>:execute-api:<Ref:AWS::Region>:<Ref:AWS::AccountId>:<Ref:ApiHttpApi{HASH}>/\$default/\*",
        "The policy for the API's callers: every method and route of this API's stage.",
    ),
    Justified(
        rf"StorageBucket{HASH}",
        frozenset({"s3:DeleteObject*", "s3:GetBucket*", "s3:List*", "s3:PutBucketPolicy"}),
        rf"<GetAtt:StorageBucket{HASH}\.Arn>(/\*)?",
        "Development stages only: CDK's custom resource that empties the bucket on `make destroy` "
        "(granted to its own role by the bucket policy).",
    ),
)


@dataclass(frozen=True)
class Grant:
    owner: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    principal: Any


def listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def grants(synth: Synthesized) -> list[Grant]:
    """Every statement of every identity and resource policy, with the logical id that holds it."""
    found = []

    def add(owner: str, document: dict) -> None:
        for s in document["Statement"]:
            found.append(
                Grant(
                    owner,
                    s["Effect"],
                    tuple(listed(s.get("Action", []))),
                    tuple(token_text(r) for r in listed(s.get("Resource", []))),
                    s.get("Principal"),
                )
            )

    for logical_id, resource in synth.json["Resources"].items():
        props = resource.get("Properties", {})
        match resource["Type"]:
            case "AWS::IAM::Policy":
                for role in props["Roles"]:
                    add(role["Ref"], props["PolicyDocument"])
            case "AWS::IAM::ManagedPolicy":
                add(logical_id, props["PolicyDocument"])
            case "AWS::IAM::Role":
                for policy in props.get("Policies", []):
                    add(logical_id, policy["PolicyDocument"])
                assert not props.get("ManagedPolicyArns") or logical_id.startswith("CustomS3AutoDeleteObjects"), (
                    f"{logical_id}: managed policies grant more than we can see; use explicit statements"
                )
            case "AWS::S3::BucketPolicy":
                add(props["Bucket"]["Ref"], props["PolicyDocument"])
            case "AWS::SQS::QueuePolicy" | "AWS::SNS::TopicPolicy":
                key = "Queues" if "Queues" in props else "Topics"
                for target in props[key]:
                    add(token_text(target), props["PolicyDocument"])
    return found


def wildcards(grant: Grant) -> list[tuple[str, str]]:
    """(action, resource) pairs of an Allow that involve a wildcard."""
    return [
        (action, resource)
        for action in grant.actions
        for resource in grant.resources
        if "*" in action or "*" in resource
    ]


def justification(owner: str, action: str, resource: str) -> Justified | None:
    for entry in ALLOWED_WILDCARDS:
        if re.fullmatch(entry.owner, owner) and action in entry.actions and re.fullmatch(entry.resource, resource):
            return entry
    return None


def test_no_unjustified_wildcard(each_stage: Synthesized) -> None:
    unjustified = [
        f"{g.owner}: {action} on {resource}"
        for g in grants(each_stage)
        if g.effect == "Allow"
        for action, resource in wildcards(g)
        if not justification(g.owner, action, resource)
    ]
    assert not unjustified, "\n".join(unjustified)


def test_every_justification_is_needed(synthesis: Synthesis) -> None:
    used = {
        justification(g.owner, action, resource)
        for synth in synthesis.stages.values()
        for g in grants(synth)
        if g.effect == "Allow"
        for action, resource in wildcards(g)
    }
    stale = [entry.reason for entry in ALLOWED_WILDCARDS if entry not in used]
    assert not stale, f"allowlist entries no longer needed: {stale}"


def test_every_justification_has_a_reason() -> None:
    for entry in ALLOWED_WILDCARDS:
        assert len(entry.reason) > 30, entry


def test_no_resource_policy_allows_anyone(each_stage: Synthesized) -> None:
    for g in grants(each_stage):
        if g.effect == "Allow" and g.principal is not None:
            assert g.principal not in ("*", {"AWS": "*"}), g


def test_the_checks_catch_a_wildcard() -> None:
    broad = Grant(f"WorkerFunctionRole{'A' * 8}", "Allow", ("dynamodb:*",), ("<GetAtt:JobsTable12345678.Arn>",), None)
    assert wildcards(broad) and not justification(broad.owner, *wildcards(broad)[0])
    everything = Grant(f"WorkerFunctionRole{'A' * 8}", "Allow", ("s3:PutObject",), ("*",), None)
    assert not justification(everything.owner, *wildcards(everything)[0])


# ---- actions exist and are scoped the way IAM can evaluate ------------------------------------
@cache
def iam_actions() -> dict[str, dict[str, list[str]]]:
    """service prefix -> lower-case action -> the resource types it supports ([] = only "*")."""
    data = json.loads(resources.files("cfnlint").joinpath("data/AdditionalSpecs/Policies.json").read_text())
    return {
        service: {action: details.get("Resources", []) for action, details in body["Actions"].items()}
        for service, body in data.items()
    }


def test_every_action_exists_and_is_scoped_as_iam_allows(each_stage: Synthesized) -> None:
    problems = []
    for g in grants(each_stage):
        for action in g.actions:
            service, _, name = action.partition(":")
            known = iam_actions().get(service)
            if known is None:
                problems.append(f"{g.owner}: unknown service in {action}")
                continue
            pattern = re.compile(re.escape(name.lower()).replace(r"\*", ".*"))
            matching = [a for a in known if pattern.fullmatch(a)]
            if not matching:
                problems.append(f"{g.owner}: no such action {action}")
            elif g.effect == "Allow" and "*" not in name and not known[name.lower()] and g.resources != ("*",):
                problems.append(f"{g.owner}: {action} supports no resource-level permission: use '*'")
    assert not problems, "\n".join(problems)


# ---- what each function may do, spelled out ----------------------------------------------------
CAPABILITY_ACTIONS = {
    "jobs:write": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"},
    "jobs:idempotency": {"dynamodb:DeleteItem"},
    "jobs:list": {"dynamodb:Query", "dynamodb:BatchGetItem"},
    "keys:read": {"dynamodb:GetItem"},
    "queue:send": {"sqs:SendMessage"},
    "queue:consume": {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    },
    "outputs:read": {"s3:GetObject"},
    "outputs:write": {"s3:PutObject"},
    "secret:read": {"secretsmanager:GetSecretValue"},
    "workflow:start": {"states:StartExecution"},
    "workflow:stop": {"states:StopExecution"},
    "workflow:callback": {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"},
    "health:check": {"sqs:GetQueueAttributes", "s3:ListBucket", "states:DescribeStateMachine"},
    "notify:send": {"sqs:SendMessage"},
    "notify:consume": {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    },
    "notify:secret": {"dynamodb:GetItem", "dynamodb:PutItem"},
    "worker:invoke": {"lambda:InvokeFunction"},
    "counters:write": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
    # The stream's event source: its reads, and the on-failure queue (FailedEvents).
    "stream:consume": {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    },
}
EVERY_FUNCTION = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_each_function_role_has_exactly_its_capabilities(dev: Synthesized) -> None:
    from infra import spec
    from infra.stack import ACCESS

    for name in spec.FUNCTIONS:
        role = next(r for r in dev.resources("AWS::IAM::Role") if r.startswith(f"{name.title()}FunctionRole"))
        actual = {a for g in grants(dev) if g.owner == role and g.effect == "Allow" for a in g.actions}
        expected = EVERY_FUNCTION.union(*(CAPABILITY_ACTIONS[c] for c in ACCESS[name]))
        if name == "finalizer":
            expected |= {"sqs:SendMessage"}  # its dead-letter queue for failed async invocations
        assert actual == expected, name


def test_only_the_worker_may_be_invoked_and_it_retries_asynchronous_events(dev: Synthesized) -> None:
    """The provider webhook hands finished predictions to the worker by name (no cycle with the
    worker's webhook URL); nothing else may be invoked, and Lambda retries a failed hand-over."""
    invokes = [g for g in grants(dev) if "lambda:InvokeFunction" in g.actions and "FunctionRole" in g.owner]
    assert [g.resources for g in invokes] == [
        ("arn:<Ref:AWS::Partition>:lambda:<Ref:AWS::Region>:<Ref:AWS::AccountId>:function:media-generation-dev-worker",)
    ]
    [config] = dev.resources("AWS::Lambda::EventInvokeConfig").values()
    assert config["Properties"]["MaximumRetryAttempts"] == 2
    assert config["Properties"]["Qualifier"] == "$LATEST"
    webhook = next(r for n, r in dev.resources("AWS::Lambda::Function").items() if n.startswith("WebhookFunction"))
    assert webhook["Properties"]["Environment"]["Variables"]["WORKER_FUNCTION_NAME"] == "media-generation-dev-worker"


def test_the_api_may_delete_only_idempotency_records(dev: Synthesized) -> None:
    deletes = [
        s
        for r in dev.json["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "dynamodb:DeleteItem" in listed(s["Action"])
    ]
    assert [s.get("Condition") for s in deletes] == [
        {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["idempotency#*"]}}
    ]


# Reads of the table's stream (the counters' event source): not item actions (see the test below).
STREAM_ACTIONS = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"}


def table_statements(synth: Synthesized, function: str) -> list[dict]:
    """The function role's Allow statements with a DynamoDB item action on the jobs table itself."""
    role = next(r for r in synth.resources("AWS::IAM::Role") if r.startswith(f"{function.title()}FunctionRole"))
    return [
        s
        for r in synth.json["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
        and any(a.startswith("dynamodb:") and a not in STREAM_ACTIONS for a in listed(s["Action"]))
        and not any("/index/" in token_text(x) for x in listed(s["Resource"]))
    ]


def test_only_the_counters_function_reads_the_table_stream(dev: Synthesized) -> None:
    """A stream cannot be read per item: the counters' role may read every change of the table
    (signing secret items' included, for the stream's 24 hours); the function itself is given job
    changes only (the event source's filter, tests/infra/test_contract.py)."""
    from infra import spec

    readers = {
        name
        for name in spec.FUNCTIONS
        for g in grants(dev)
        if g.owner.startswith(f"{name.title()}FunctionRole") and "dynamodb:GetRecords" in g.actions
    }
    assert readers == {"counters"}


def test_the_authorizer_may_read_only_key_items(dev: Synthesized) -> None:
    assert [(listed(s["Action"]), s.get("Condition")) for s in table_statements(dev, "authorizer")] == [
        (["dynamodb:GetItem"], {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["apikey#*"]}})
    ]


def test_only_the_notifier_may_read_webhook_signing_secrets_and_only_the_authorizer_api_keys(dev: Synthesized) -> None:
    """Signing secrets (`signing#…`) and API keys (`apikey#…`) are jobs-table items: every other
    grant on the table excludes both (the public webhook function's included), the notifier may
    read the secrets and create only the deployment's, the authorizer may read the keys."""
    from infra import spec

    excluded = {"ForAllValues:StringNotLike": {"dynamodb:LeadingKeys": ["signing#*", "apikey#*"]}}
    secret_grants = []
    for name in spec.FUNCTIONS:
        for statement in table_statements(dev, name):
            condition, actions = statement.get("Condition"), listed(statement["Action"])
            if condition == excluded:
                continue  # any item but a signing secret
            keys = (condition or {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
            assert keys, f"{name}: {actions} on every item of the table, signing secrets included"
            if any(key.startswith(("signing#", "apikey#")) for key in keys):
                secret_grants.append((name, actions, keys))
    assert sorted(secret_grants) == [
        ("authorizer", ["dynamodb:GetItem"], ["apikey#*"]),
        ("notifier", ["dynamodb:GetItem"], ["signing#*"]),
        ("notifier", ["dynamodb:PutItem"], ["signing#deployment"]),
    ]


def test_the_counters_function_may_only_add_to_counter_items(dev: Synthesized) -> None:
    """It reads every job change from the stream, but may write none: counters and timings only."""
    assert [(sorted(listed(s["Action"])), s.get("Condition")) for s in table_statements(dev, "counters")] == [
        (
            ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["stats#*", "owner#*", "timing#*"]}},
        )
    ]
