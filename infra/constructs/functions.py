"""One Lambda function of infra/spec.py FUNCTIONS, the same way for all of them: arm64, its own role
(no managed policy: it may write its own log group and nothing else until granted more), a log
group with retention, X-Ray tracing (see the `tracing` option), and its deployment package from infra/bundle.py."""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, Duration, ILocalBundling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra import bundle, spec
from infra.config import Config
from infra.constructs import log_group

# The bundles are built for it (bundle.PYTHON_VERSION): both come from spec.LAMBDA_PYTHON.
RUNTIME: lambda_.Runtime = getattr(lambda_.Runtime, "PYTHON_" + spec.LAMBDA_PYTHON.replace(".", "_"))
ARCHITECTURE = lambda_.Architecture.ARM_64  # bundle.ARCHITECTURE
# Lambda's log-level filter for the functions' own JSON lines, named as Powertools names them.
APPLICATION_LOG_LEVELS = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
    "CRITICAL": lambda_.ApplicationLogLevel.FATAL,
}


@jsii.implements(ILocalBundling)
class LocalBundler:
    """CDK local bundling: the project's bundler builds the package on this machine, so Docker and
    the image below are never used. CDK calls it only for stacks it bundles: `cdk synth`, `diff`,
    `deploy`; not `destroy`, `bootstrap` or `list` (its `bundlingStacks` context is then empty)."""

    def __init__(self, function: str) -> None:
        self.function = function

    def try_bundle(self, output_dir: str, *_options: Any, **_keywords: Any) -> bool:
        bundle.build_into(self.function, output_dir)
        return True


def function_code(name: str, config: Config) -> lambda_.Code:
    if config.assets == "source":
        # Offline synth for the tests: the template is the same, the package is not deployable.
        return lambda_.Code.from_asset(str(spec.FUNCTIONS[name].source_dir))
    return lambda_.Code.from_asset(
        str(spec.FUNCTIONS[name].source_dir),
        # The package depends on more than the function's directory (shared/, the lock, the
        # groups): the bundler's inputs hash names the asset, so any change rebuilds it.
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=bundle.inputs_hash(name),
        bundling=BundlingOptions(image=RUNTIME.bundling_image, local=LocalBundler(name)),
    )


class ServiceFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        function: spec.FunctionSpec,
        config: Config,
        environment: dict[str, str],
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.name = function.name
        self.log_group = log_group(self, "Logs", config)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{config.prefix}-{function.name}: see infra/stack.py ACCESS",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=f"{config.prefix}-{function.name}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=function.handler,
            code=function_code(function.name, config),
            memory_size=function.memory_mb,
            timeout=Duration.seconds(function.timeout_seconds),
            role=self.role,
            log_group=self.log_group,
            # JSON format, so Lambda filters by level: its own START/END/REPORT lines are INFO, and
            # at WARN only its warnings remain (duration and memory are Lambda metrics anyway). The
            # application level is the stack's, the one Powertools logs at.
            logging_format=lambda_.LoggingFormat.JSON,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            application_log_level_v2=APPLICATION_LOG_LEVELS[config.log_level],
            # Active: Lambda samples requests without a trace header at its own fixed rate (see
            # the `tracing` option); PassThrough: traced only inside a sampled trace.
            tracing=lambda_.Tracing.ACTIVE if config.tracing == "all" else lambda_.Tracing.PASS_THROUGH,
            environment=environment,
            dead_letter_queue=dead_letter_queue,
        )
        # CreateLogStream + PutLogEvents on this log group only.
        self.log_group.grant_write(self.role)


class ReservedConcurrency(Construct):
    """Reserve `count` concurrent executions for `function` at deploy time, when the account can.

    Lambda refuses a reservation that would leave the account fewer than its minimum unreserved
    executions (100 on a standard account; new accounts may start with a limit of 10, which can
    spare none). Set as the function's property, that refusal would fail the whole `cdk deploy`;
    set here, by CDK's SDK-call custom resource, the refusal is ignored and the function runs
    unreserved (README, "Deploy to AWS").
    """

    def __init__(self, scope: Construct, id: str, *, function: lambda_.Function, count: int, config: Config) -> None:
        super().__init__(scope, id)
        # Its own role and log group, as every function of the stack: no managed policy.
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        logs = log_group(self, "Logs", config)
        logs.grant_write(role)
        reserve = cr.AwsSdkCall(
            service="Lambda",
            action="putFunctionConcurrency",
            parameters={"FunctionName": function.function_name, "ReservedConcurrentExecutions": count},
            physical_resource_id=cr.PhysicalResourceId.of(f"{function.function_name}-reserved-concurrency"),
            # The account cannot spare it: deploy on, unreserved.
            ignore_error_codes_matching="InvalidParameterValue.*",
        )
        cr.AwsCustomResource(
            self,
            "Resource",
            on_create=reserve,
            on_update=reserve,
            on_delete=cr.AwsSdkCall(
                service="Lambda",
                action="deleteFunctionConcurrency",
                parameters={"FunctionName": function.function_name},
                ignore_error_codes_matching="ResourceNotFound.*",
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency"],
                        resources=[function.function_arn],
                    )
                ]
            ),
            role=role,
            log_group=logs,
            install_latest_aws_sdk=False,
        )
