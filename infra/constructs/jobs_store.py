"""Jobs table, built from infra/spec.py TABLE (the shape the emulation creates too)."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import spec
from infra.config import Config
from infra.constructs import removal_policy
from shared.auth import KEY_ITEM_PREFIX
from shared.idempotency import KEY_PREFIX as IDEMPOTENCY_PREFIX
from shared.job_store import COUNTER_PREFIX, OWNER_COUNTER_PREFIX, TIMING_PREFIX
from shared.signing import DEPLOYMENT
from shared.signing import ITEM_PREFIX as SIGNING_PREFIX

# Webhook signing secrets are items of this table that only the notifier may touch: the job grants
# (every function's) exclude them; grant_signing_secrets gives the notifier its access alone.
# Every grant on the table but the authorizer's and the notifier's own: no API key item (the
# authorizer reads them; operators manage them with their own credentials) and no signing secret.
NOT_SECRETS = {"ForAllValues:StringNotLike": {"dynamodb:LeadingKeys": [f"{SIGNING_PREFIX}*", f"{KEY_ITEM_PREFIX}*"]}}


def _attribute(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class JobsStore(Construct):
    def __init__(self, scope: Construct, id: str, *, config: Config) -> None:
        super().__init__(scope, id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=_attribute(spec.TABLE.partition_key),
            # On demand: nothing to pay while idle, no capacity to plan.
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=spec.TABLE.ttl_attribute,
            # Every change, before and after: the stats counters are kept from it (functions/counters).
            stream=dynamodb.StreamViewType(spec.TABLE.stream_view_type),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=config.production,
            removal_policy=removal_policy(config),
        )
        for index in spec.TABLE.indexes:
            self.table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_attribute(index.partition_key),
                sort_key=_attribute(index.sort_key),
                # Keys only: progress writes never touch the indexes; a page is Query + BatchGetItem.
                projection_type=dynamodb.ProjectionType.KEYS_ONLY,
            )

    def index_arns(self) -> list[str]:
        return [f"{self.table.table_arn}/index/{index.name}" for index in spec.TABLE.indexes]

    def grant_job_writes(self, grantee: iam.IGrantable) -> None:
        """Read a job and change it: every status change is a conditional Put + counter Update in one
        TransactWriteItems (authorized per item action), progress a conditional UpdateItem. Any
        item but a signing secret or an API key."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:ConditionCheckItem",
                ],
                resources=[self.table.table_arn],
                conditions=NOT_SECRETS,
            )
        )

    def grant_signing_secrets(self, grantee: iam.IGrantable) -> None:
        """The notifier: read the webhook signing secrets (`signing#<key id>`, `signing#deployment`)
        and create the deployment's on first use (a conditional put), nothing else of them."""
        principal = grantee.grant_principal
        for action, key in (
            ("dynamodb:GetItem", f"{SIGNING_PREFIX}*"),
            ("dynamodb:PutItem", SIGNING_PREFIX + DEPLOYMENT),
        ):
            principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=[action],
                    resources=[self.table.table_arn],
                    conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [key]}},
                )
            )

    def grant_idempotency_records(self, grantee: iam.IGrantable) -> None:
        """Idempotency records (shared/idempotency.py) live in this table under `idempotency#` keys and
        are deleted when the request they guard fails. Reads and writes come with jobs:write; the
        delete is only allowed on those keys, never on a job."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:DeleteItem"],
                resources=[self.table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{IDEMPOTENCY_PREFIX}#*"]}},
            )
        )

    def grant_counter_writes(self, grantee: iam.IGrantable) -> None:
        """The counters function: read and add to the counter and timing items only, never a job
        (a transaction of updates is authorized per item, as UpdateItem)."""
        prefixes = (COUNTER_PREFIX, OWNER_COUNTER_PREFIX, TIMING_PREFIX)
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                resources=[self.table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{p}*" for p in prefixes]}},
            )
        )

    def grant_key_reads(self, grantee: iam.IGrantable) -> None:
        """The key authorizer: GetItem on API key items (`apikey#<hash>`) only, never a job."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem"],
                resources=[self.table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{KEY_ITEM_PREFIX}*"]}},
            )
        )

    def grant_listing(self, grantee: iam.IGrantable) -> None:
        """List jobs (Query on the two indexes, then BatchGetItem) and read the stats counters."""
        principal = grantee.grant_principal
        principal.add_to_principal_policy(iam.PolicyStatement(actions=["dynamodb:Query"], resources=self.index_arns()))
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:BatchGetItem"], resources=[self.table.table_arn], conditions=NOT_SECRETS
            )
        )
