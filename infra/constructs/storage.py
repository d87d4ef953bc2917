"""Outputs bucket: private, encrypted, TLS only; generated images expire with their jobs."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import Config
from infra.constructs import removal_policy, suppress
from shared.output_files import OUTPUTS_PREFIX


class OutputsStorage(Construct):
    def __init__(self, scope: Construct, id: str, *, config: Config) -> None:
        super().__init__(scope, id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            lifecycle_rules=[
                # A job's item expires JOB_RETENTION_DAYS after it ends (DynamoDB TTL); its outputs
                # are written before it ends, so they live one day longer: never a dangling link.
                s3.LifecycleRule(
                    id="expire-outputs",
                    prefix=OUTPUTS_PREFIX,
                    expiration=Duration.days(config.job_retention_days + 1),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)
                ),
            ],
            removal_policy=removal_policy(config),
            # Outside production, `make destroy` also empties the bucket (a CDK custom resource).
            auto_delete_objects=not config.production,
        )
        suppress(
            self.bucket,
            "S1",
            "Objects are written by the worker role only and read through presigned URLs the API hands "
            "out; server access logs would need a second bucket for little audit value. Turn on "
            "CloudTrail S3 data events if you need an access trail.",
        )

    @property
    def outputs_arn(self) -> str:
        return self.bucket.arn_for_objects(f"{OUTPUTS_PREFIX}*")

    def grant_write_outputs(self, grantee: iam.IGrantable) -> None:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[self.outputs_arn])
        )

    def grant_read_outputs(self, grantee: iam.IGrantable) -> None:
        # Presigned download URLs carry the signer's permissions: the API signs them.
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.outputs_arn])
        )
