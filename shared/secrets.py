"""The provider's credentials: from the environment locally, from Secrets Manager when deployed.

The deployed secret is JSON {"api_token": "r8_...", "webhook_secret": "whsec_..."} (the webhook
secret is optional: without it the API fetches it from the provider). Powertools Parameters
caches it for five minutes per warm container, so a rotated token is picked up without a deploy.
Values stay wrapped in SecretStr so they never print by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from shared.settings import get_settings

SECRET_MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class ProviderCredentials:
    api_token: SecretStr | None
    webhook_secret: SecretStr | None


def provider_credentials() -> ProviderCredentials:
    settings = get_settings()
    token, webhook_secret = settings.replicate_api_token, settings.replicate_webhook_secret
    if settings.replicate_secret_arn and not (token and webhook_secret):
        from aws_lambda_powertools.utilities import parameters

        stored = parameters.get_secret(settings.replicate_secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
        token = token or _secret(stored.get("api_token"))
        webhook_secret = webhook_secret or _secret(stored.get("webhook_secret"))
    return ProviderCredentials(api_token=token, webhook_secret=webhook_secret)


def _secret(value: object) -> SecretStr | None:
    return SecretStr(value) if isinstance(value, str) and value else None
