"""One Lambda function of infra/spec.py FUNCTIONS, the same way for all of them: arm64, its own role
(no managed policy: it may write its own log group and nothing else until granted more), a log
group with retention, active X-Ray tracing, and its deployment package from infra/bundle.py."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import bundle, spec
from infra.config import Config
from infra.constructs import log_group

RUNTIME = lambda_.Runtime.PYTHON_3_12  # the bundles are built for it: bundle.PYTHON_VERSION
ARCHITECTURE = lambda_.Architecture.ARM_64  # bundle.ARCHITECTURE


def function_code(name: str, config: Config) -> lambda_.Code:
    if config.assets == "source":
        # Offline synth for the tests: the template is the same, the package is not deployable.
        return lambda_.Code.from_asset(str(spec.FUNCTIONS[name].source_dir))
    if not bundle.is_current(name):
        raise RuntimeError(f"build/{name} is missing or older than the sources: run `make bundle` first")
    return lambda_.Code.from_asset(str(bundle.bundle_dir(name)), exclude=[bundle.STAMP])


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
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            dead_letter_queue=dead_letter_queue,
        )
        # CreateLogStream + PutLogEvents on this log group only.
        self.log_group.grant_write(self.role)
