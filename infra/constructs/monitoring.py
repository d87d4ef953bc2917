"""What the old Celery Flower dashboard showed, and the alarms that say when to look: one CloudWatch
dashboard (jobs, queue, workflow, API, functions) and alarms notifying an SNS topic.

Each alarm metric is billed ($0.10 a month), so the alarms watch outcomes, where every failure
that matters ends up: the dead-letter queues, the oldest pending job, failed executions, the API's
5xx. A function's errors have an alarm of their own only where no outcome alarm sees them (the
worker's hand-over from the webhook, the public webhook URL, the stats counters); throttles, one
account-wide alarm. Every function's errors, throttles and duration are on the dashboard."""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.aws_lambda import IFunction
from constructs import Construct

from infra.config import Config
from shared.observability import NAMESPACE, SERVICE

FIVE_MINUTES = Duration.minutes(5)
JOB_METRICS = (
    "JobsSubmitted",
    "JobsCompleted",
    "JobsFailed",
    "JobsCancelled",
    "JobsRetried",
    "ProviderErrors",
)
# Errors no outcome alarm sees, and the threshold of each: the worker's (a failed attempt is retried
# or recorded, and the executions alarm sees a failed job: a burst only; its asynchronous finish
# after a webhook fails silently to Collect otherwise), the webhook function's (behind its own URL,
# not the API's 5xx) and the counters' (a failing batch stalls the stats until it lands in the
# failed events' queue). The api's and authorizer's errors are the API's 5xx; the dispatcher's,
# finalizer's and notifier's end in their dead-letter queues.
ERROR_ALARMS = {"worker": 5, "webhook": 1, "counters": 1}


def job_metric(name: str, statistic: str = "Sum") -> cw.Metric:
    """A Powertools metric (EMF, dimension `service`) of shared/observability.py."""
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic=statistic,
        period=FIVE_MINUTES,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: Config,
        functions: dict[str, IFunction],
        queue: sqs.IQueue,
        dead_letter_queues: dict[str, sqs.IQueue],
        state_machine: sfn.StateMachine,
        http_api: apigw.HttpApi,
    ) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(self, "Alarms", display_name=f"{config.prefix} alarms", enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.alarms: list[cw.Alarm] = []

        for name, dlq in dead_letter_queues.items():
            self._alarm(
                f"{name}NotEmpty",
                dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=Duration.minutes(1)),
                1,
                f"{name}: messages nobody could process. Inspect them in the SQS console, fix, redrive.",
            )
        self._alarm(
            "OldestPendingJob",
            queue.metric_approximate_age_of_oldest_message(statistic="Maximum", period=Duration.minutes(1)),
            config.pending_job_alarm_seconds,
            "A queued job has waited too long for its workflow: is the dispatcher failing or throttled?",
        )
        failed_executions = cw.MathExpression(
            expression="failed + timedOut",
            using_metrics={
                "failed": state_machine.metric_failed(statistic="Sum", period=FIVE_MINUTES),
                "timedOut": state_machine.metric_timed_out(statistic="Sum", period=FIVE_MINUTES),
            },
            label="Failed or timed-out executions",
            period=FIVE_MINUTES,
        )
        self._alarm(
            "ExecutionsFailed",
            failed_executions,
            1,
            "Job workflows failed or timed out: the jobs are marked failed with a code (see the "
            "workflow's executions and logs).",
        )
        self._alarm(
            "Api5xx",
            http_api.metric_server_error(statistic="Sum", period=FIVE_MINUTES),
            1,
            "The API answered 5xx (503 = a job could not be queued): see the api function's logs.",
        )
        for name, threshold in ERROR_ALARMS.items():
            self._alarm(
                f"{name.title()}Errors",
                functions[name].metric_errors(statistic="Sum", period=FIVE_MINUTES),
                threshold,
                f"The {name} function raised errors: see its logs (errors carry the job id).",
            )
        self._alarm(
            "LambdaThrottles",
            cw.Metric(namespace="AWS/Lambda", metric_name="Throttles", statistic="Sum", period=FIVE_MINUTES),
            1,
            "Lambda throttled a function of this account (the dashboard says which): its concurrency is "
            "exhausted, or the webhook function's reserved concurrency (a flood of deliveries).",
        )

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{config.prefix}-{Aws.REGION}",
            default_interval=Duration.hours(3),
        )
        self._widgets(functions, queue, dead_letter_queues, state_machine, http_api)

    def _alarm(self, id: str, metric: cw.IMetric, threshold: float, description: str) -> None:
        alarm = cw.Alarm(
            self,
            id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # No data means nothing happened: an idle stack is a healthy one.
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _widgets(self, functions, queue, dead_letter_queues, state_machine, http_api) -> None:
        def graph(title: str, metrics: list[cw.IMetric], width: int = 8, **kwargs) -> cw.GraphWidget:
            return cw.GraphWidget(title=title, left=metrics, width=width, height=6, **kwargs)

        per_function = lambda make: [make(f).with_(label=n) for n, f in functions.items()]  # noqa: E731
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown="## Media generation\nJobs as the service counts them (Powertools metrics), then "
                "the queue, the workflow, the API and the functions. Logs: each function's log group "
                "(JSON, with `job_id` and the correlation id); traces: X-Ray.",
                width=24,
                height=2,
            ),
            cw.AlarmStatusWidget(alarms=self.alarms, title="Alarms", width=24, height=3),
        )
        self.dashboard.add_widgets(
            graph("Jobs", [job_metric(name).with_(label=name) for name in JOB_METRICS]),
            graph(
                "Job duration (s)",
                [job_metric("JobDuration", stat).with_(label=stat) for stat in ("p50", "p90", "Maximum")],
            ),
            graph(
                "Queue",
                [
                    queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES).with_(label="pending"),
                    queue.metric_approximate_number_of_messages_not_visible(period=FIVE_MINUTES).with_(
                        label="dispatching"
                    ),
                    *[
                        dlq.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES).with_(label=name)
                        for name, dlq in dead_letter_queues.items()
                    ],
                ],
                right=[
                    queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES).with_(
                        label="oldest pending (s)"
                    )
                ],
            ),
        )
        self.dashboard.add_widgets(
            graph(
                "Workflow executions",
                [
                    state_machine.metric_started(period=FIVE_MINUTES).with_(label="started"),
                    state_machine.metric_succeeded(period=FIVE_MINUTES).with_(label="succeeded"),
                    state_machine.metric_failed(period=FIVE_MINUTES).with_(label="failed"),
                    state_machine.metric_timed_out(period=FIVE_MINUTES).with_(label="timed out"),
                    state_machine.metric_aborted(period=FIVE_MINUTES).with_(label="aborted (cancel)"),
                ],
            ),
            graph(
                "API requests",
                [
                    http_api.metric_count(period=FIVE_MINUTES).with_(label="requests"),
                    http_api.metric_client_error(period=FIVE_MINUTES).with_(label="4xx"),
                    http_api.metric_server_error(period=FIVE_MINUTES).with_(label="5xx"),
                ],
            ),
            graph(
                "API latency (ms)",
                [
                    http_api.metric_latency(statistic=stat, period=FIVE_MINUTES).with_(label=stat)
                    for stat in ("p50", "p90", "p99")
                ],
            ),
        )
        self.dashboard.add_widgets(
            graph("Function errors", per_function(lambda f: f.metric_errors(period=FIVE_MINUTES))),
            graph("Function throttles", per_function(lambda f: f.metric_throttles(period=FIVE_MINUTES))),
            graph(
                "Function duration p90 (ms)",
                per_function(lambda f: f.metric_duration(statistic="p90", period=FIVE_MINUTES)),
            ),
        )
