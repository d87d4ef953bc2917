"""The job workflow: infra/statemachine/job.asl.json inlined with the substitutions of
infra/spec.py (the same ones the emulation renders), its role, logs and tracing; and the
EventBridge rule that hands executions which ended TIMED_OUT, FAILED or ABORTED to the finalizer."""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Duration, Fn, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import spec
from infra.config import Config
from infra.constructs import log_group, suppress

# The execution statuses the finalizer records as the job's failure (local/event_sources.py
# plays the same rule on the emulation).
ENDED_UNHAPPILY = ("TIMED_OUT", "FAILED", "ABORTED")
FINALIZER = "finalizer"


def task_functions(settings: spec.WorkflowSettings) -> set[str]:
    """The functions the workflow invokes: those whose ARN the substitutions put in the ASL."""
    sentinels = {name: f"<function:{name}>" for name in spec.FUNCTIONS}
    values = spec.workflow_substitutions(sentinels, settings).values()
    return {name for name, sentinel in sentinels.items() if any(sentinel in value for value in values)}


class JobWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: Config,
        settings: spec.WorkflowSettings,
        functions: dict[str, lambda_.IFunction],
        failed_events: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id)
        arns = {name: function.function_arn for name, function in functions.items()}
        self.substitutions = spec.workflow_substitutions(arns, settings)
        # Under /aws/vendedlogs/ so that Step Functions' log delivery does not add this group to the
        # account's CloudWatch Logs resource policy (5,120 characters, shared by every stack). The
        # stack id's UUID makes the name new for each stack instance (a retained group never clashes).
        stack_uuid = Fn.select(2, Fn.split("/", Aws.STACK_ID))
        self.logs = log_group(self, "Logs", config, name=f"/aws/vendedlogs/states/{config.prefix}-{stack_uuid}")
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            # Inlined (not from_file, which uploads an asset): the template and cfn-lint see it.
            definition_body=sfn.DefinitionBody.from_string(spec.WORKFLOW.definition.read_text()),
            definition_substitutions=self.substitutions,
            state_machine_type=sfn.StateMachineType.STANDARD,
            role=self.role,
            # Failures only: every event of every execution is in its history anyway (kept 90 days),
            # and at ALL each job wrote about 7 KB of logs. Execution data is ids, statuses and
            # error codes: no prompts, no tokens.
            logs=sfn.LogOptions(destination=self.logs, level=sfn.LogLevel.ERROR, include_execution_data=True),
            tracing_enabled=True,
        )
        suppress(
            self.state_machine,
            "SF1",
            "Logs failures only: every event of every execution is in its execution history (90 days), "
            "and logging ALL of them would write about 7 KB per job",
        )
        # Exactly the functions the definition invokes, unqualified as it names them.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[arns[name] for name in sorted(task_functions(settings))],
            )
        )

        self.execution_ended = events.Rule(
            self,
            "ExecutionEnded",
            description="Executions of the job workflow that did not succeed: the finalizer records why",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                    "status": list(ENDED_UNHAPPILY),
                },
            ),
        )
        self.execution_ended.add_target(
            targets.LambdaFunction(
                functions[FINALIZER],
                retry_attempts=8,
                max_event_age=Duration.hours(24),
                dead_letter_queue=failed_events,
            )
        )

    def executions_arn(self) -> str:
        """Every execution of this state machine (execution names are job id + attempt)."""
        return Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def grant_start(self, grantee: iam.IGrantable) -> None:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn])
        )

    def grant_stop(self, grantee: iam.IGrantable) -> None:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StopExecution"], resources=[self.executions_arn()])
        )

    def grant_task_response(self, grantee: iam.IGrantable) -> None:
        # These three actions support no resource-level permissions (IAM's Service Authorization
        # Reference): a statement naming the state machine would never match. The task token
        # itself is the capability, and only this workflow hands tokens to the provider.
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"],
                resources=["*"],
            )
        )
