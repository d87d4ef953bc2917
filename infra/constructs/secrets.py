"""The provider's credentials in Secrets Manager: one secret, JSON
{"api_token": "r8_...", "webhook_secret": "whsec_..."} (webhook_secret optional).

The stack creates it with an empty token; you put the real value in after the first deploy (see the
README). CloudFormation only writes SecretString when the template's value changes, so later
deploys keep what you put in.
"""

from __future__ import annotations

import json

from aws_cdk import SecretValue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import Config
from infra.constructs import removal_policy, suppress

PLACEHOLDER = {"api_token": ""}


class ProviderSecret(Construct):
    def __init__(self, scope: Construct, id: str, *, config: Config) -> None:
        super().__init__(scope, id)
        self.secret = secretsmanager.Secret(
            self,
            "Replicate",
            description='Replicate credentials: {"api_token": "r8_...", "webhook_secret": "whsec_..."}',
            # Not a secret: an empty placeholder, replaced by `aws secretsmanager put-secret-value`.
            secret_string_value=SecretValue.unsafe_plain_text(json.dumps(PLACEHOLDER)),
            removal_policy=removal_policy(config),
        )
        suppress(
            self.secret,
            "SMG4",
            "A third-party API token: it is rotated at Replicate, then stored here with put-secret-value; "
            "there is no rotation Lambda to write for it.",
        )

    def grant_read(self, grantee: iam.IGrantable) -> None:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[self.secret.secret_arn])
        )
