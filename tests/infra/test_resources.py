"""CDK assertions on the synthesized template: each capability has the properties the README
promises (secure by default, cheap when idle, data kept in production)."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from infra import spec
from infra.constructs.api import ADMIN_ROUTE, ROUTES
from infra.constructs.functions import ARCHITECTURE, RUNTIME
from shared.output_files import OUTPUTS_PREFIX

from .conftest import Synthesized
from .workflow_helpers import token_text


def function(synth: Synthesized, name: str) -> tuple[str, dict]:
    wanted = f"media-generation-{synth.stage}-{name}"
    (found,) = [
        (lid, r)
        for lid, r in synth.resources("AWS::Lambda::Function").items()
        if r["Properties"].get("FunctionName") == wanted
    ]
    return found


def ssl_enforced(synth: Synthesized, policy_type: str, target_key: str, logical_id: str) -> bool:
    """A resource policy on `logical_id` that denies every request not made over TLS."""
    for policy in synth.resources(policy_type).values():
        targets = policy["Properties"][target_key]
        if logical_id not in json.dumps(targets):
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                return True
    return False


# ---- jobs table --------------------------------------------------------------------------------
def test_table_is_built_from_the_spec(each_stage: Synthesized) -> None:
    each_stage.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": spec.TABLE.partition_key, "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": spec.TABLE.ttl_attribute, "Enabled": True},
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.partition_key, "KeyType": "HASH"},
                        {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
                for index in spec.TABLE.indexes
            ],
        },
    )


def test_production_keeps_its_data_and_development_cleans_up(dev: Synthesized, prod: Synthesized) -> None:
    _, table = prod.resource("AWS::DynamoDB::Table")
    assert table["Properties"]["DeletionProtectionEnabled"] is True
    _, dev_table = dev.resource("AWS::DynamoDB::Table")
    assert dev_table["Properties"]["DeletionProtectionEnabled"] is False
    for type_ in (
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
        "AWS::Logs::LogGroup",
    ):
        for logical_id, resource in prod.resources(type_).items():
            assert resource.get("DeletionPolicy") == "Retain", f"prod {logical_id}"
        for logical_id, resource in dev.resources(type_).items():
            assert resource.get("DeletionPolicy") == "Delete", f"dev {logical_id}"
    # Only development empties the bucket on delete.
    assert dev.resources("Custom::S3AutoDeleteObjects")
    assert not prod.resources("Custom::S3AutoDeleteObjects")


# ---- queue ---------------------------------------------------------------------------------------
QUEUES = {"Queue": (spec.QUEUE, "dispatcher"), "ClientWebhooks": (spec.NOTIFY_QUEUE, "notifier")}


def test_queue_settings_come_from_the_spec_and_match_the_consumer(each_stage: Synthesized) -> None:
    queues = each_stage.resources("AWS::SQS::Queue")
    redriven = {k: q for k, q in queues.items() if "RedrivePolicy" in q["Properties"]}
    assert len(redriven) == len(QUEUES)
    for construct, (queue_spec, consumer) in QUEUES.items():
        [props] = [q["Properties"] for k, q in redriven.items() if k.startswith(construct)]
        dlq_id = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert props["VisibilityTimeout"] == queue_spec.visibility_timeout_seconds
        assert props["MessageRetentionPeriod"] == queue_spec.retention_seconds
        assert props["RedrivePolicy"]["maxReceiveCount"] == queue_spec.max_receive_count
        assert queues[dlq_id]["Properties"]["MessageRetentionPeriod"] == queue_spec.dlq_retention_seconds
        # A batch in flight never becomes visible again before its consumer has timed out.
        assert props["VisibilityTimeout"] >= 6 * spec.FUNCTIONS[consumer].timeout_seconds
    for logical_id, q in queues.items():
        assert q["Properties"].get("SqsManagedSseEnabled") is True, logical_id
        assert ssl_enforced(each_stage, "AWS::SQS::QueuePolicy", "Queues", logical_id), logical_id


@pytest.mark.parametrize(("consumer", "queue_spec"), [("dispatcher", spec.QUEUE), ("notifier", spec.NOTIFY_QUEUE)])
def test_consumers_take_their_queue_in_bounded_batches(dev: Synthesized, consumer: str, queue_spec) -> None:
    function_id, _ = function(dev, consumer)
    [mapping] = [
        m
        for m in dev.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert mapping["Properties"] == mapping["Properties"] | {
        "BatchSize": queue_spec.batch_size,
        "MaximumBatchingWindowInSeconds": queue_spec.max_batching_window_seconds,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": queue_spec.max_concurrency},
    }


# ---- storage -------------------------------------------------------------------------------------
def test_bucket_is_private_encrypted_tls_only_and_expires_outputs(each_stage: Synthesized) -> None:
    bucket_id, bucket = each_stage.resource("AWS::S3::Bucket")
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert ssl_enforced(each_stage, "AWS::S3::BucketPolicy", "Bucket", bucket_id)
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    retention = int(each_stage.stack.node.try_get_context("jobRetentionDays"))
    assert rules["expire-outputs"]["Prefix"] == OUTPUTS_PREFIX
    # Outputs outlive their job's item (TTL after the job ends) by a day: no dangling download link.
    assert rules["expire-outputs"]["ExpirationInDays"] == retention + 1


# ---- secret ----------------------------------------------------------------------------------------
def test_one_provider_secret_holding_json_and_no_real_value(dev: Synthesized) -> None:
    [(secret_id, secret)] = [
        (k, r) for k, r in dev.resources("AWS::SecretsManager::Secret").items() if k.startswith("ProviderSecret")
    ]
    assert json.loads(secret["Properties"]["SecretString"]) == {"api_token": ""}
    for name in ("api", "worker", "finalizer"):
        assert function(dev, name)[1]["Properties"]["Environment"]["Variables"]["REPLICATE_SECRET_ARN"] == {
            "Ref": secret_id
        }
    assert "REPLICATE_SECRET_ARN" not in function(dev, "dispatcher")[1]["Properties"]["Environment"]["Variables"]


def test_the_provider_secret_is_the_only_one(each_stage: Synthesized) -> None:
    """Secrets Manager bills each secret every month: the client webhook signing secrets are
    jobs-table items instead (shared/signing.py), so the idle stack pays for one."""
    assert len(each_stage.resources("AWS::SecretsManager::Secret")) == 1
    assert "CLIENT_WEBHOOK_SECRET" not in json.dumps(each_stage.json)


# ---- functions -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(spec.FUNCTIONS))
def test_function_runtime_size_tracing_and_logs(dev: Synthesized, name: str) -> None:
    _, resource = function(dev, name)
    props = resource["Properties"]
    assert props["Runtime"] == RUNTIME.name == "python3.12"
    assert props["Architectures"] == [ARCHITECTURE.name] == ["arm64"]
    assert props["Handler"] == spec.FUNCTIONS[name].handler
    assert props["MemorySize"] == spec.FUNCTIONS[name].memory_mb
    assert props["Timeout"] == spec.FUNCTIONS[name].timeout_seconds
    # Traced only inside a sampled trace (a workflow execution's): in Active mode Lambda would
    # sample every API request and webhook at its own fixed rate, which no rule lowers.
    assert props["TracingConfig"] == {"Mode": "PassThrough"}
    log_group = dev.json["Resources"][props["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Properties"]["RetentionInDays"] == int(dev.stack.node.try_get_context("logRetentionDays"))
    assert "VpcConfig" not in props  # no VPC, so no NAT gateway to pay for while idle


@pytest.mark.parametrize("name", list(spec.FUNCTIONS))
def test_function_logs_are_json_without_the_platform_lines(dev: Synthesized, name: str) -> None:
    """Lambda's START/END/REPORT lines are INFO system logs: at WARN they are not written (billed
    bytes on every invocation); the functions' own lines are filtered at the stack's level."""
    config = function(dev, name)[1]["Properties"]["LoggingConfig"]
    assert config["LogFormat"] == "JSON"
    assert config["SystemLogLevel"] == "WARN"
    level = str(dev.stack.node.try_get_context("logLevel") or "INFO").upper()
    assert config["ApplicationLogLevel"] == {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(level, level)


def test_every_log_group_has_a_retention(each_stage: Synthesized) -> None:
    groups = each_stage.resources("AWS::Logs::LogGroup")
    # The functions', the workflow's, the API's access logs, the webhook throttle's custom resource.
    assert len(groups) == len(spec.FUNCTIONS) + 3
    for logical_id, group in groups.items():
        assert group["Properties"].get("RetentionInDays"), logical_id


def test_function_environment(dev: Synthesized) -> None:
    config_settings = {
        "JOB_TIMEOUT": "600",
        "MAX_RETRY_ATTEMPTS": "3",
        "RETRY_INTERVAL_SECONDS": "2",
        "PRESIGNED_URL_TTL": "3600",
        "JOB_RETENTION_DAYS": "30",
        "DEFAULT_MODEL": "black-forest-labs/flux-schnell",
        "QUEUE_MAX_RECEIVE_COUNT": str(spec.QUEUE.max_receive_count),
        "QUEUE_MAX_CONCURRENCY": str(spec.QUEUE.max_concurrency),
        "POWERTOOLS_SERVICE_NAME": "media-generation",
        "POWERTOOLS_METRICS_NAMESPACE": "MediaGeneration",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }
    table_id, _ = dev.resource("AWS::DynamoDB::Table")
    bucket_id, _ = dev.resource("AWS::S3::Bucket")
    machine_id, _ = dev.resource("AWS::StepFunctions::StateMachine")
    url_id, _ = dev.resource("AWS::Lambda::Url")
    for name in spec.FUNCTIONS:
        env = function(dev, name)[1]["Properties"]["Environment"]["Variables"]
        assert env | config_settings == env, name
        assert env[spec.RESOURCE_ENV["table"]] == {"Ref": table_id}
        assert env[spec.RESOURCE_ENV["bucket"]] == {"Ref": bucket_id}
        assert "Ref" in env[spec.RESOURCE_ENV["queue"]]
        # The state machine invokes the worker and the finalizer: they cannot know its ARN (a cycle),
        # and do not need it. The functions that start or stop executions do.
        if name in ("api", "dispatcher"):
            assert env[spec.RESOURCE_ENV["state_machine"]] == {"Ref": machine_id}
        else:
            assert spec.RESOURCE_ENV["state_machine"] not in env
        if name == "worker":
            assert env["WEBHOOK_BASE_URL"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}
        else:
            assert "WEBHOOK_BASE_URL" not in env


def test_settings_baked_into_the_workflow_reach_the_functions_too(dev: Synthesized) -> None:
    """Whatever spec.WorkflowSettings reads from the settings (heartbeat, poll interval...) is set on
    the functions with the same value, so the worker and its workflow agree."""
    from infra.config import Config

    config = Config.from_context(dev.stack.node.try_get_context)
    names = config.workflow_setting_names()
    assert {"job_timeout", "max_retry_attempts", "retry_interval_seconds"} <= names
    settings = config.settings()
    for name in spec.FUNCTIONS:
        env = function(dev, name)[1]["Properties"]["Environment"]["Variables"]
        for setting in names:
            assert env[setting.upper()] == str(getattr(settings, setting)), (name, setting)


def test_synth_ignores_the_environment_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test session's emulation exports JOB_TIMEOUT=60 and friends: none of it may leak in."""
    from infra.config import Config

    monkeypatch.setenv("JOB_TIMEOUT", "7")
    monkeypatch.setenv("HEARTBEAT_SECONDS", "5")
    config = Config.from_context(lambda key: None)
    assert config.settings().job_timeout == 600
    assert config.workflow_settings().job_timeout_seconds == 600


# ---- API -----------------------------------------------------------------------------------------
def test_every_route_of_the_api_function_is_deployed_and_authenticated(dev: Synthesized) -> None:
    from functions.api.app import api  # the router: the routes the function serves

    served = {f"{route.method} {route.path}" for route in api.routes}
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in dev.resources("AWS::ApiGatewayV2::Route").values()}
    admin = f"{ADMIN_ROUTE[0].value} {ADMIN_ROUTE[1]}"
    assert set(routes) - {admin} == served
    assert set(routes) == {f"{m.value} {p}" for m, p in ROUTES} | {admin}
    [authorizer] = dev.resources("AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["AuthorizerType"] == "REQUEST"
    assert authorizer["Properties"]["EnableSimpleResponses"] is True
    assert authorizer["Properties"]["IdentitySource"] == ["$request.header.Authorization"]
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 60
    for key, route in routes.items():
        if key.split(" ")[1].startswith("/api/v1/"):
            assert route["AuthorizationType"] == "CUSTOM", key  # the API key authorizer
        else:
            assert route["AuthorizationType"] == "AWS_IAM", key


def test_the_provider_webhook_has_its_own_throttled_url_and_nothing_else_does(dev: Synthesized) -> None:
    """The webhook function alone has a (public) function URL, throttled by its reserved concurrency;
    the worker gives the provider that URL; no route of the HTTP API leads to it."""
    [(url_id, url)] = dev.resources("AWS::Lambda::Url").items()
    webhook_id, webhook = function(dev, "webhook")
    assert url["Properties"] == {"AuthType": "NONE", "TargetFunctionArn": {"Fn::GetAtt": [webhook_id, "Arn"]}}
    # Reserved at deploy time, not as the function's property: an account that cannot spare the
    # reservation (a new one, limited to 10) would fail the whole deploy on it.
    assert "ReservedConcurrentExecutions" not in webhook["Properties"]
    [throttle] = dev.resources("Custom::AWS").values()
    calls = {event: json.loads(token_text(throttle["Properties"][event])) for event in ("Create", "Update", "Delete")}
    reserve = {
        "service": "Lambda",
        "action": "putFunctionConcurrency",
        "parameters": {
            "FunctionName": f"<Ref:{webhook_id}>",
            "ReservedConcurrentExecutions": dev.stack.node.try_get_context("webhookConcurrency"),
        },
        "ignoreErrorCodesMatching": "InvalidParameterValue.*",
    }
    for event in ("Create", "Update"):
        assert {k: calls[event][k] for k in reserve} == reserve, event
    assert calls["Delete"]["action"] == "deleteFunctionConcurrency"
    assert calls["Delete"]["parameters"] == {"FunctionName": f"<Ref:{webhook_id}>"}
    worker_env = function(dev, "worker")[1]["Properties"]["Environment"]["Variables"]
    assert worker_env["WEBHOOK_BASE_URL"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}
    integrations = dev.resources("AWS::ApiGatewayV2::Integration").values()
    assert webhook_id not in json.dumps(list(integrations))
    # Anyone may call it, through its URL only (a direct Invoke stays IAM-protected).
    public = [
        p["Properties"]
        for p in dev.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "*"
    ]
    target = {"Fn::GetAtt": [webhook_id, "Arn"]}
    assert sorted(public, key=lambda p: p["Action"]) == [
        {"Action": "lambda:InvokeFunction", "FunctionName": target, "InvokedViaFunctionUrl": True, "Principal": "*"},
        {"Action": "lambda:InvokeFunctionUrl", "FunctionName": target, "FunctionUrlAuthType": "NONE", "Principal": "*"},
    ]
    for name in spec.FUNCTIONS:
        if name != "webhook":
            assert "ReservedConcurrentExecutions" not in function(dev, name)[1]["Properties"], name


def test_api_is_throttled_and_logged(dev: Synthesized) -> None:
    _, stage = dev.resource("AWS::ApiGatewayV2::Stage")
    props = stage["Properties"]
    assert props["StageName"] == "$default"
    assert props["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": dev.stack.node.try_get_context("apiThrottleRateLimit"),
        "ThrottlingBurstLimit": dev.stack.node.try_get_context("apiThrottleBurstLimit"),
    }
    assert "RouteSettings" not in props
    log_format = json.loads(props["AccessLogSettings"]["Format"])
    assert {"requestId", "status", "routeKey", "userArn"} <= set(log_format)
    # One line per request: nothing the log event or another field already says.
    assert not {"requestTime", "caller", "authorizerError"} & set(log_format)
    assert props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0] in dev.resources("AWS::Logs::LogGroup")


def test_api_integration_is_the_api_function_with_payload_v2(dev: Synthesized) -> None:
    api_id, _ = function(dev, "api")
    _, integration = dev.resource("AWS::ApiGatewayV2::Integration")
    assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    assert integration["Properties"]["IntegrationUri"] == {"Fn::GetAtt": [api_id, "Arn"]}


# ---- workflow ----------------------------------------------------------------------------------------
def test_state_machine_logs_and_traces(each_stage: Synthesized) -> None:
    _, machine = each_stage.resource("AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    # Failures only: the execution history already holds every event (ALL wrote ~7 KB per job).
    assert props["LoggingConfiguration"]["Level"] == "ERROR"
    group = props["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    log_group = each_stage.resources("AWS::Logs::LogGroup")[group["Fn::GetAtt"][0]]
    # Vended-logs prefix: no entry in the account's size-limited CloudWatch Logs resource policy.
    name = log_group["Properties"]["LogGroupName"]["Fn::Join"][1]
    assert name[0].startswith("/aws/vendedlogs/states/")


def test_failed_executions_reach_the_finalizer_with_retries_and_a_dead_letter_queue(dev: Synthesized) -> None:
    finalizer_id, _ = function(dev, "finalizer")
    machine_id, _ = dev.resource("AWS::StepFunctions::StateMachine")
    _, rule = dev.resource("AWS::Events::Rule")
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"stateMachineArn": [{"Ref": machine_id}], "status": ["TIMED_OUT", "FAILED", "ABORTED"]},
    }
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [finalizer_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    dlq_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    assert dev.json["Resources"][dlq_id]["Type"] == "AWS::SQS::Queue"
    # The finalizer's own async failures land in the same queue.
    assert function(dev, "finalizer")[1]["Properties"]["DeadLetterConfig"] == {
        "TargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}
    }
    # EventBridge may invoke the finalizer, from this rule only.
    dev.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [finalizer_id, "Arn"]},
            "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
        },
    )


# ---- monitoring ----------------------------------------------------------------------------------
def alarm_metrics(synth: Synthesized) -> dict[str, set[str]]:
    """Alarm logical id -> the CloudWatch metric names it watches."""
    found = {}
    for logical_id, alarm in synth.resources("AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        names = {props["MetricName"]} if "MetricName" in props else set()
        names |= {q["MetricStat"]["Metric"]["MetricName"] for q in props.get("Metrics", []) if "MetricStat" in q}
        found[logical_id] = names
    return found


def test_alarms_cover_what_needs_a_human(dev: Synthesized) -> None:
    watched = alarm_metrics(dev)
    every = set().union(*watched.values())
    assert {
        "ApproximateNumberOfMessagesVisible",  # DLQ depth
        "ApproximateAgeOfOldestMessage",  # the oldest pending job
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "5xx",
        "Errors",
        "Throttles",
    } <= every
    from infra.constructs.monitoring import ERROR_ALARMS

    assert len([names for names in watched.values() if names == {"Errors"}]) == len(ERROR_ALARMS)
    [throttles] = [lid for lid, names in watched.items() if names == {"Throttles"}]
    assert "Dimensions" not in dev.resources("AWS::CloudWatch::Alarm")[throttles]["Properties"]  # every function
    dlq_alarms = [lid for lid, names in watched.items() if names == {"ApproximateNumberOfMessagesVisible"}]
    assert len(dlq_alarms) == 3  # the jobs' DLQ, the failed events' queue, the client webhooks' DLQ
    topic_id, _ = dev.resource("AWS::SNS::Topic")
    for logical_id, alarm in dev.resources("AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}], logical_id
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching", logical_id


def test_the_alarms_and_dashboard_cost_at_most_4_60_a_month(dev: Synthesized) -> None:
    """$0.10 per alarm metric, $3 per dashboard: with one $0.40 secret, idle stays within $5."""
    from bench.cost import alarm_metric_count

    metrics = sum(alarm_metric_count(a) for a in dev.resources("AWS::CloudWatch::Alarm").values())
    assert metrics == 11
    assert 0.10 * metrics + 3.00 * len(dev.resources("AWS::CloudWatch::Dashboard")) <= 4.60


def test_oldest_pending_job_alarm_watches_the_jobs_queue(dev: Synthesized) -> None:
    queues = dev.resources("AWS::SQS::Queue")
    (jobs_queue,) = [k for k, q in queues.items() if "RedrivePolicy" in q["Properties"] and k.startswith("Queue")]
    dev.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateAgeOfOldestMessage",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [jobs_queue, "QueueName"]}}],
            "Threshold": dev.stack.node.try_get_context("pendingJobAlarmSeconds"),
        },
    )


def test_dashboard_shows_the_service_metrics(dev: Synthesized) -> None:
    _, dashboard = dev.resource("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("JobsSubmitted", "JobsCompleted", "JobsFailed", "JobDuration", "ProviderErrors"):
        assert metric in body
    assert "MediaGeneration" in body


def test_alarm_email_is_optional(dev: Synthesized) -> None:
    assert not dev.resources("AWS::SNS::Subscription")


# ---- cheap when idle -----------------------------------------------------------------------------
def test_nothing_billed_by_the_hour(each_stage: Synthesized) -> None:
    types = {r["Type"] for r in each_stage.json["Resources"].values()}
    hourly = {
        "AWS::EC2::NatGateway",
        "AWS::EC2::VPC",
        "AWS::KMS::Key",
        "AWS::RDS::DBInstance",
        "AWS::ElastiCache::CacheCluster",
    }
    assert not types & hourly
    # Provisioned concurrency is billed by the hour; reserved concurrency (the webhook's throttle) is not.
    assert not each_stage.resources("AWS::Lambda::Version")
    for resource in each_stage.resources("AWS::Lambda::Alias").values():
        assert "ProvisionedConcurrencyConfig" not in resource["Properties"]


def test_cors_is_off_by_default_and_an_allowlist_when_set(dev: Synthesized) -> None:
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from infra.config import Config
    from infra.constructs.api import Api

    [(_, http_api)] = dev.resources("AWS::ApiGatewayV2::Api").items()
    assert "CorsConfiguration" not in http_api["Properties"]
    origins = "https://app.example.com,https://admin.example.com"
    config = Config.from_context(lambda key: origins if key == "corsAllowedOrigins" else None)
    stack = Stack(App(), "CorsCheck")
    Api(stack, "Api", config=config)
    [cors] = [
        r["Properties"]["CorsConfiguration"]
        for r in Template.from_stack(stack).find_resources("AWS::ApiGatewayV2::Api").values()
    ]
    assert cors["AllowOrigins"] == ["https://app.example.com", "https://admin.example.com"]
    assert "authorization" in cors["AllowHeaders"] and cors["MaxAge"] == 3600


def test_traces_are_sampled_at_the_configured_rate_without_a_reservoir(dev: Synthesized) -> None:
    """At a million jobs a month, a per-second reservoir alone would trace millions of requests."""
    (rule,) = dev.resources("AWS::XRay::SamplingRule").values()
    props = rule["Properties"]["SamplingRule"]
    assert props["FixedRate"] == float(dev.stack.node.try_get_context("tracingSampleRate")) == 0.01
    assert props["ReservoirSize"] == 0
