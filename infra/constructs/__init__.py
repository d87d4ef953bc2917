"""One construct per capability, composed by infra/stack.py.

Each construct owns its resources and exposes narrow `grant_*` methods that add explicit,
least-privilege statements (exact actions, exact resources) to a function's role.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

from infra.config import Config

# CloudWatch Logs accepts these retention periods only.
_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def log_retention(config: Config) -> logs.RetentionDays:
    try:
        return _RETENTION[config.log_retention_days]
    except KeyError:
        raise ValueError(f"logRetentionDays must be one of {sorted(_RETENTION)}") from None


def removal_policy(config: Config) -> RemovalPolicy:
    """Production keeps its data when the stack is deleted; other stages clean up after themselves."""
    return RemovalPolicy.RETAIN if config.production else RemovalPolicy.DESTROY


def log_group(scope, id: str, config: Config, name: str | None = None) -> logs.LogGroup:
    return logs.LogGroup(
        scope, id, log_group_name=name, retention=log_retention(config), removal_policy=removal_policy(config)
    )


def suppress(construct, rule: str, reason: str, *, applies_to: tuple[str, ...] = (), children: bool = False) -> None:
    """Accept one cdk-nag AwsSolutions finding on `construct`, with the reason.

    `applies_to` narrows an IAM5 suppression to the listed findings (an entry starting with "/" is
    a regular expression, for logical ids with their hash): any other wildcard still fails.
    """
    from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

    findings = [RegexAppliesTo(regex=a) if a.startswith("/") else a for a in applies_to]
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=f"AwsSolutions-{rule}", reason=reason, applies_to=findings or None)],
        apply_to_children=children,
    )
