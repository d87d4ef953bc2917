"""The whole service in one stack: the capabilities of infra/constructs/, wired together.

What each function may do is one table (ACCESS); each entry becomes explicit IAM statements on
exact resources (see the grant_* methods of the constructs).
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Stack, Tags
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_xray as xray
from aws_cdk.aws_lambda_event_sources import DynamoEventSource, SqsDlq, SqsEventSource
from constructs import Construct

from infra import spec
from infra.config import Config
from infra.constructs import suppress
from infra.constructs.api import Api
from infra.constructs.functions import ReservedConcurrency, ServiceFunction
from infra.constructs.jobs_store import JobsStore
from infra.constructs.monitoring import Monitoring
from infra.constructs.notify import ClientWebhooks
from infra.constructs.queue import JobsQueue
from infra.constructs.secrets import ProviderSecret
from infra.constructs.storage import OutputsStorage
from infra.constructs.workflow import FINALIZER, JobWorkflow
from shared.observability import NAMESPACE, SERVICE

# What each function of infra/spec.py may do (and nothing else).
ACCESS: dict[str, frozenset[str]] = {
    "api": frozenset(
        {
            "jobs:write",
            "jobs:idempotency",
            "jobs:list",
            "queue:send",
            "outputs:read",
            "secret:read",
            "workflow:stop",
            "health:check",
            "notify:send",
        }
    ),
    # Every function that changes a job's status queues its client webhook events (notify:send).
    "dispatcher": frozenset({"jobs:write", "queue:consume", "workflow:start", "notify:send"}),
    # Heartbeats and completes its own task token (mock generation and fast predictions).
    "worker": frozenset({"jobs:write", "outputs:write", "secret:read", "workflow:callback", "notify:send"}),
    # Cancels the provider's prediction of a job that failed.
    "finalizer": frozenset({"jobs:write", "secret:read", "notify:send"}),
    # Delivers client webhooks: reads the job (and presigns its outputs), records each delivery,
    # re-queues retries; the only reader of the signing secrets (items of the jobs table).
    "notifier": frozenset({"jobs:write", "outputs:read", "notify:consume", "notify:send", "notify:secret"}),
    # The HTTP API's key authorizer: reads key items, nothing else.
    "authorizer": frozenset({"keys:read"}),
    # The provider's webhooks (its own public URL): verifies them with the provider secret, raises
    # progress, keeps the Generate task's heartbeat, hands finished predictions to the worker.
    "webhook": frozenset({"jobs:write", "secret:read", "workflow:callback", "notify:send", "worker:invoke"}),
    # Keeps the stats counters from the table's stream (one transaction per batch) and the models'
    # mean durations.
    "counters": frozenset({"counters:write", "stream:consume"}),
}

# The functions that start predictions, so tell the provider where to send its webhooks.
CALLED_BACK = frozenset({"worker"})
WEBHOOK = "webhook"  # the function behind the provider's webhook URL
# Lambda's asynchronous invoke of the worker (the provider webhook's hand-over): tries after the
# first, and how long an event may wait in Lambda's queue (a lost one leaves it to Collect).
WORKER_ASYNC_RETRIES = 2


class MediaGenerationStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: Config, **kwargs) -> None:
        super().__init__(scope, id, description=f"Media generation service ({config.stage})", **kwargs)
        Tags.of(self).add("project", "media-generation")
        Tags.of(self).add("stage", config.stage)
        missing = set(spec.FUNCTIONS) - set(ACCESS)
        if missing:
            raise ValueError(f"infra/stack.py ACCESS: say what {sorted(missing)} may do")

        storage = OutputsStorage(self, "Storage", config=config)
        jobs = JobsStore(self, "Jobs", config=config)
        queues = JobsQueue(self, "Queue")
        secret = ProviderSecret(self, "ProviderSecret", config=config)
        client_webhooks = ClientWebhooks(self, "ClientWebhooks")
        api = Api(self, "Api", config=config)
        settings = config.workflow_settings()

        common_env = {
            spec.RESOURCE_ENV["table"]: jobs.table.table_name,
            spec.RESOURCE_ENV["queue"]: queues.queue.queue_url,
            spec.RESOURCE_ENV["bucket"]: storage.bucket.bucket_name,
            spec.RESOURCE_ENV["notify_queue"]: client_webhooks.queue.queue_url,
            "QUEUE_MAX_RECEIVE_COUNT": str(spec.QUEUE.max_receive_count),
            "QUEUE_MAX_CONCURRENCY": str(spec.QUEUE.max_concurrency),
            **_settings_env(config),
            "API_AUTH": "keys",
            "POWERTOOLS_SERVICE_NAME": SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": config.log_level,
            **spec.RUNTIME_ENV,
        }
        functions: dict[str, ServiceFunction] = {}
        for name, function in spec.FUNCTIONS.items():
            env = dict(common_env)
            if "secret:read" in ACCESS[name] and not config.mock_generation:
                # Set: the functions use Replicate with the secret's token. Unset: mock generation.
                env["REPLICATE_SECRET_ARN"] = secret.secret.secret_arn
            if "worker:invoke" in ACCESS[name]:
                # By name, not by reference: the worker's environment names where the webhooks go,
                # so a reference back to it could make a cycle.
                env["WORKER_FUNCTION_NAME"] = worker_name(config)
            functions[name] = ServiceFunction(
                self,
                f"{name.title()}Function",
                function=function,
                config=config,
                environment=env,
                # Execution-status events the finalizer failed on, after Lambda's async retries.
                dead_letter_queue=queues.failed_events if name == FINALIZER else None,
            )
        lambdas = {name: f.function for name, f in functions.items()}
        if config.webhook_concurrency:
            # The public webhook URL's throttle: a flood is refused with 429 by Lambda.
            ReservedConcurrency(
                self, "WebhookThrottle", function=lambdas[WEBHOOK], count=config.webhook_concurrency, config=config
            )
        # The provider's webhooks come to a Lambda function URL of their own, not the HTTP API: no
        # request charge per delivery, no authorizer (the function checks the signature).
        webhook_url = lambdas[WEBHOOK].add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
        for name in CALLED_BACK:
            lambdas[name].add_environment("WEBHOOK_BASE_URL", webhook_url.url)
        lambdas["worker"].configure_async_invoke(
            retry_attempts=WORKER_ASYNC_RETRIES, max_event_age=Duration.seconds(max(60, settings.job_timeout_seconds))
        )

        workflow = JobWorkflow(
            self,
            "Workflow",
            config=config,
            settings=settings,
            functions=lambdas,
            failed_events=queues.failed_events,
        )
        api.route_to(lambdas["api"], authorizer=lambdas["authorizer"])

        grants = {
            "jobs:write": jobs.grant_job_writes,
            "jobs:idempotency": jobs.grant_idempotency_records,
            "jobs:list": jobs.grant_listing,
            "keys:read": jobs.grant_key_reads,
            "counters:write": jobs.grant_counter_writes,
            "queue:send": queues.grant_send,
            "outputs:read": storage.grant_read_outputs,
            "outputs:write": storage.grant_write_outputs,
            "secret:read": secret.grant_read,
            "workflow:start": workflow.grant_start,
            "workflow:stop": workflow.grant_stop,
            "workflow:callback": workflow.grant_task_response,
            "health:check": lambda role: _grant_health_checks(role, queues, storage, workflow),
            "notify:send": client_webhooks.grant_send,
            "notify:secret": jobs.grant_signing_secrets,
            "worker:invoke": lambda role: _grant_worker_invoke(self, role, config),
        }
        # The table's stream, consumed by an event source (which grants its reads): job changes only,
        # batched for up to the spec's window (the lag of stats); failed batches to FailedEvents.
        for name, function in functions.items():
            if "stream:consume" in ACCESS[name]:
                stream = spec.COUNTER_STREAM
                function.function.add_event_source(
                    DynamoEventSource(
                        jobs.table,
                        starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                        batch_size=stream.batch_size,
                        max_batching_window=Duration.seconds(stream.max_batching_window_seconds),
                        retry_attempts=stream.retry_attempts,
                        on_failure=SqsDlq(queues.failed_events),
                        filters=[lambda_.FilterCriteria.filter(f) for f in stream.filters],
                    )
                )
        # Queues consumed through an event source rather than granted: (queue, its spec).
        consumed = {
            "queue:consume": (queues.queue, spec.QUEUE),
            "notify:consume": (client_webhooks.queue, spec.NOTIFY_QUEUE),
        }
        for name, function in functions.items():
            for capability in sorted(ACCESS[name] - consumed.keys() - {"stream:consume"}):
                grants[capability](function.role)
            if ACCESS[name] & {"workflow:start", "workflow:stop"}:
                function.function.add_environment(
                    spec.RESOURCE_ENV["state_machine"], workflow.state_machine.state_machine_arn
                )
            for capability, (queue, queue_spec) in consumed.items():
                if capability in ACCESS[name]:
                    function.function.add_event_source(
                        SqsEventSource(
                            queue,
                            batch_size=queue_spec.batch_size,
                            max_batching_window=Duration.seconds(queue_spec.max_batching_window_seconds),
                            # For the jobs queue, bounds how fast workflows start: the provider's rate limit.
                            max_concurrency=queue_spec.max_concurrency,
                            report_batch_item_failures=True,
                        )
                    )
            _suppress_function_findings(function)

        monitoring = None
        if config.monitoring:
            monitoring = Monitoring(
                self,
                "Monitoring",
                config=config,
                functions=lambdas,
                queue=queues.queue,
                dead_letter_queues={
                    "JobsDeadLetterQueue": queues.dead_letter_queue,
                    "FailedEvents": queues.failed_events,
                    "ClientWebhooksDeadLetterQueue": client_webhooks.dead_letter_queue,
                },
                state_machine=workflow.state_machine,
                http_api=api.http_api,
            )
        _suppress_workflow_findings(workflow)

        invoke_policy = api.invoke_policy()
        outputs = {
            "ApiUrl": (api.stage.url, "Base URL of the API (SigV4-signed requests, service execute-api)"),
            "ApiInvokePolicyArn": (
                invoke_policy.managed_policy_arn,
                "Attach to the users or roles that call the API",
            ),
            "ReplicateSecretArn": (secret.secret.secret_arn, 'Put {"api_token": "r8_..."} here'),
            "WebhookUrl": (webhook_url.url, "Where Replicate posts its webhooks (the webhook function's URL)"),
            "OutputsBucketName": (storage.bucket.bucket_name, "Generated images"),
            "JobsTableName": (jobs.table.table_name, "Jobs table"),
            "JobsQueueUrl": (queues.queue.queue_url, "Jobs queue"),
            "DeadLetterQueueUrl": (queues.dead_letter_queue.queue_url, "Job messages nobody could dispatch"),
            "FailedEventsQueueUrl": (queues.failed_events.queue_url, "Execution events the finalizer missed"),
            "StateMachineArn": (workflow.state_machine.state_machine_arn, "Job workflow"),
        }
        if monitoring:
            outputs["AlarmTopicArn"] = (monitoring.topic.topic_arn, "Subscribe to receive the alarms")
            outputs["DashboardUrl"] = (
                f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
                f"#dashboards:name={monitoring.dashboard.dashboard_name}",
                "CloudWatch dashboard",
            )
        # Traces at tracingSampleRate, no per-second reservoir. Before the default rule (priority
        # 10000) for every service: the state machine's generated name has no stable prefix.
        xray.CfnSamplingRule(
            self,
            "TraceSampling",
            sampling_rule=xray.CfnSamplingRule.SamplingRuleProperty(
                rule_name=f"mg-{config.stage}",
                priority=9000,
                fixed_rate=config.tracing_sample_rate,
                reservoir_size=0,
                service_name="*",
                service_type="*",
                host="*",
                http_method="*",
                url_path="*",
                resource_arn="*",
                version=1,
            ),
        )
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)


def worker_name(config: Config) -> str:
    return f"{config.prefix}-worker"  # infra/constructs/functions.py names every function so


def _grant_worker_invoke(stack: Stack, role, config: Config) -> None:
    """lambda:InvokeFunction on the worker alone (the provider webhook hands it finished predictions)."""
    from aws_cdk import ArnFormat
    from aws_cdk import aws_iam as iam

    arn = stack.format_arn(
        service="lambda",
        resource="function",
        resource_name=worker_name(config),
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    role.add_to_principal_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[arn]))


def _settings_env(config: Config) -> dict[str, str]:
    """The job settings (and those baked into the workflow), as the functions' env variables: the
    functions and the workflow definition always agree."""
    settings = config.settings()
    names = set(config.function_settings()) | config.workflow_setting_names()
    return {name.upper(): str(getattr(settings, name)) for name in sorted(names) if hasattr(settings, name)}


def _suppress_function_findings(function: ServiceFunction) -> None:
    suppress(
        function.function,
        "L1",
        "python3.12 on purpose: the packages are built from wheels for it (infra/bundle.py); moving to a "
        "newer runtime is a change of both constants and a test run.",
    )
    # Each wildcard is also listed, with its reason, in tests/infra/test_iam.py.
    suppress(
        function.role,
        "IAM5",
        "Resource '*': X-Ray's PutTraceSegments/PutTelemetryRecords and Step Functions' SendTask* accept "
        "no resource. outputs/*: output keys are made per job at run time. execution:<machine>:*: "
        "execution names are made per job attempt.",
        applies_to=(
            "Resource::*",
            r"/^Resource::<StorageBucket[0-9A-F]{8}\.Arn>\/outputs\/\*$/g",
            r"/^Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<WorkflowStateMachine[0-9A-F]{8}\.Name>:\*$/g",
        ),
        children=True,
    )


def _suppress_workflow_findings(workflow: JobWorkflow) -> None:
    suppress(
        workflow.role,
        "IAM5",
        "CloudWatch Logs delivery and X-Ray actions accept no resource (CDK adds them for the logging and "
        "tracing of the state machine); the Lambda invocations name the exact functions.",
        applies_to=("Resource::*",),
        children=True,
    )


def _grant_health_checks(role, queues: JobsQueue, storage: OutputsStorage, workflow: JobWorkflow) -> None:
    """GET /health?deep=true: one cheap call to each resource (the table's GetItem is in jobs:write)."""
    from aws_cdk import aws_iam as iam

    for action, resource in (
        ("sqs:GetQueueAttributes", queues.queue.queue_arn),
        ("s3:ListBucket", storage.bucket.bucket_arn),  # what HeadBucket needs
        ("states:DescribeStateMachine", workflow.state_machine.state_machine_arn),
    ):
        role.add_to_principal_policy(iam.PolicyStatement(actions=[action], resources=[resource]))
