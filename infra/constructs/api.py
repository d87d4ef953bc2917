"""HTTP API (API Gateway v2) in front of the api function: every route of functions/api/app.py,
throttled, with JSON access logs. The /api/v1 routes take API keys (a Lambda REQUEST authorizer,
simple responses, cached KEY_CACHE_SECONDS per Authorization header); the rest is IAM-signed,
including the operators' way in, /admin/v1/{proxy+} (every /api/v1 route, over every owner).

Why IAM rather than JWT: it needs no identity provider to deploy or to call (any IAM user or role
with execute-api:Invoke, e.g. `curl --aws-sigv4`), and access is granted and revoked with the rest
of the account's IAM. The provider's webhooks are not a route here: Replicate cannot sign with
SigV4, so they go to the webhook function's own URL, which checks their signature (infra/stack.py).
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk.aws_apigatewayv2_authorizers import HttpIamAuthorizer, HttpLambdaAuthorizer, HttpLambdaResponseType
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from infra.config import Config
from infra.constructs import log_group, suppress

GET, POST = apigw.HttpMethod.GET, apigw.HttpMethod.POST
# The routes of functions/api/app.py (a test checks that the two lists agree).
ROUTES: tuple[tuple[apigw.HttpMethod, str], ...] = (
    (POST, "/api/v1/generate"),
    (GET, "/api/v1/status/{job_id}"),
    (GET, "/api/v1/jobs/{job_id}"),
    (GET, "/api/v1/jobs"),
    (POST, "/api/v1/jobs/{job_id}/cancel"),
    (POST, "/api/v1/jobs/{job_id}/retry"),
    (GET, "/api/v1/stats"),
    (GET, "/api/v1/models"),
    (GET, "/health"),
    (GET, "/docs"),
    (GET, "/openapi.json"),
)
# Operators (IAM): the api function serves /admin/v1/<route> as /api/v1/<route>, unscoped.
ADMIN_ROUTE = (apigw.HttpMethod.ANY, "/admin/v1/{proxy+}")
# How long API Gateway caches a key's answer: a revoked key stops working within this.
KEY_CACHE_SECONDS = 60
STAGE = "$default"

# One line per request, so only what tells requests apart: the log event carries the time, the
# signer's ARN names the caller, and IAM authorization has no authorizer whose error to log.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "userArn": "$context.identity.userArn",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
}


CORS_HEADERS = ["authorization", "content-type", "idempotency-key"]


def cors(origins: tuple[str, ...]) -> apigw.CorsPreflightOptions | None:
    """CORS at the API Gateway level, for the allowed origins only (off when there are none)."""
    if not origins:
        return None
    return apigw.CorsPreflightOptions(
        allow_origins=list(origins),
        allow_methods=[apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.POST],
        allow_headers=CORS_HEADERS,
        expose_headers=["location", "retry-after"],
        max_age=Duration.hours(1),
    )


class Api(Construct):
    def __init__(self, scope: Construct, id: str, *, config: Config) -> None:
        super().__init__(scope, id)
        self.config = config
        self.http_api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=config.prefix,
            description="Media generation API (IAM-authenticated)",
            default_authorizer=HttpIamAuthorizer(),
            cors_preflight=cors(config.cors_allowed_origins),
            # Our own stage below, for throttling and access logs.
            create_default_stage=False,
        )
        self.access_logs = log_group(self, "AccessLogs", config)
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name=STAGE,
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=config.api_throttle_rate_limit, burst_limit=config.api_throttle_burst_limit
            ),
        )
        stage: apigw.CfnStage = self.stage.node.default_child  # type: ignore[assignment]
        stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn, format=json.dumps(ACCESS_LOG_FORMAT)
        )

    def route_to(self, handler: lambda_.IFunction, authorizer: lambda_.IFunction) -> None:
        integration = HttpLambdaIntegration("ApiFunction", handler)
        keys = HttpLambdaAuthorizer(
            "KeyAuthorizer",
            authorizer,
            authorizer_name="api-key",
            response_types=[HttpLambdaResponseType.SIMPLE],
            identity_source=["$request.header.Authorization"],
            results_cache_ttl=Duration.seconds(KEY_CACHE_SECONDS),
        )
        for method, path in ROUTES:
            by_key = path.startswith("/api/v1/")
            self.http_api.add_routes(
                path=path, methods=[method], integration=integration, **({"authorizer": keys} if by_key else {})
            )
        method, path = ADMIN_ROUTE
        self.http_api.add_routes(path=path, methods=[method], integration=integration)

    def invoke_policy(self) -> iam.ManagedPolicy:
        """A managed policy to attach to the users or roles that may call the API."""
        routes = Stack.of(self).format_arn(
            service="execute-api",
            resource=self.http_api.api_id,
            resource_name=f"{STAGE}/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        policy = iam.ManagedPolicy(
            self,
            "InvokePolicy",
            description="Call the media generation API (attach to the callers' users or roles)",
            statements=[iam.PolicyStatement(actions=["execute-api:Invoke"], resources=[routes])],
        )
        suppress(
            policy,
            "IAM5",
            "Every method and route of this one API's stage: the policy is for the API's callers.",
            applies_to=(
                r"/^Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<ApiHttpApi[0-9A-F]{8}>\/\$default\/\*$/g",
            ),
        )
        return policy
