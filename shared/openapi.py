"""The api's OpenAPI 3.1 document and Swagger UI page, built from the routes' declarations
(shared/http_api.py) when first asked for, never at a cold start: the JSON schemas come from the
same pydantic models that validate the requests and build the answers.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

from shared.http_api import Route

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
ERROR_DESCRIPTIONS = {
    401: "API key malformed, unknown or revoked, in the error shape (a request with no Authorization "
    'header at all is refused by API Gateway itself, before any function: {"message": "Unauthorized"})',
    429: "Over the key's quota: ACTIVE_JOBS_LIMIT or RATE_LIMITED; wait `Retry-After` seconds",
    404: "No such job",
    409: "Not possible in the job's current status, or the same Idempotency-Key is still in progress",
    413: "Body larger than the API accepts",
    415: "Body is not JSON (send Content-Type: application/json)",
    422: "Invalid input (body, path or query): `errors` names each offending field",
    500: "Unexpected error on our side; details are in the logs only",
    503: "Not queued: the job was marked failed, submit it again later",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}
# As deployed: client apps send an API key on /api/v1 (the authorizer checks it); operators sign
# with SigV4 (IAM) on /health and /admin/v1/<route> (the /api/v1 routes over every owner), which
# this document does not list. The provider's webhook is no route of this API (functions/webhook,
# on its own URL). Locally, `make dev` asks for neither unless API_AUTH=keys.
SECURITY_SCHEMES = {
    "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key from `make api-key NAME=...` (mg_...)"},
    "sigv4": {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "description": "AWS Signature Version 4 of an IAM principal with execute-api:Invoke: /health, and "
        "/admin/v1/<route> for every /api/v1/<route> over every owner",
        "x-amazon-apigateway-authtype": "awsSigv4",
    },
}
API_KEY = [{"apiKey": []}]
IAM = [{"sigv4": []}]


def document(routes: list[Route], *, title: str, version: str, description: str) -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    from shared.schemas import ErrorBody

    documented = [route for route in routes if route.documented]
    answers = {ErrorBody} | {model for route in documented for model in _answers(route)}
    bodies = {route.body for route in documented if route.body}
    _, definitions = models_json_schema(
        [(model, "validation") for model in sorted(bodies, key=_name)]
        + [(model, "serialization") for model in sorted(answers, key=_name)],
        ref_template=REF,
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for route in documented:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "description": description, "version": version},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": SECURITY_SCHEMES},
        "webhooks": client_webhooks(),
    }


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    from shared.schemas import ErrorBody

    doc = (route.endpoint.__doc__ or "").strip()
    operation: dict[str, Any] = {"summary": doc.split("\n", 1)[0], "operationId": route.operation_id}
    if "\n" in doc:
        operation["description"] = doc.split("\n", 1)[1].strip()
    if route.tags:
        operation["tags"] = list(route.tags)
    parameters = [
        parameter
        for location, model in (("path", route.path_params), ("query", route.query), ("header", route.headers))
        for parameter in _parameters(model, location, schemas)
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        content = {"application/json": {"schema": {"$ref": REF.format(model=route.body.__name__)}}}
        operation["requestBody"] = {"required": True, "content": content}
    responses = {route.status: (route.description, route.response)}
    codes = {*route.errors, 422, 500} | ({401} if route.security == API_KEY else set())  # the router's guard
    responses |= {code: (ERROR_DESCRIPTIONS[code], ErrorBody) for code in codes}
    responses |= route.other_responses
    operation["responses"] = {
        str(status): {"description": text, "content": {"application/json": {"schema": _schema_of(model)}}}
        | ({"headers": RETRY_AFTER} if status == 429 else {})
        for status, (text, model) in sorted(responses.items())
    }
    if route.security is not None:
        operation["security"] = route.security
    return operation


def _parameters(model: Any, location: str, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    schemas.update(schema.get("$defs", {}))
    required = set(schema.get("required", ()))
    parameters = []
    for name, property_schema in schema["properties"].items():
        parameter = {"name": name, "in": location, "required": location == "path" or name in required}
        if "description" in property_schema:
            parameter["description"] = property_schema["description"]
        parameters.append(parameter | {"schema": property_schema})
    return parameters


def _answers(route: Route) -> list[Any]:
    models = [route.response, *(model for _, model in route.other_responses.values())]
    return [member for model in models for member in _members(model)]


def _members(model: Any) -> tuple[Any, ...]:
    """The models of a union (DeepHealth | Health), or the model itself."""
    if isinstance(model, types.UnionType) or typing.get_origin(model) is typing.Union:
        return typing.get_args(model)
    return (model,)


def _schema_of(model: Any) -> dict[str, Any]:
    refs = [{"$ref": REF.format(model=member.__name__)} for member in _members(model)]
    return refs[0] if len(refs) == 1 else {"anyOf": refs}


def _name(model: Any) -> str:
    return model.__name__


def client_webhooks() -> dict[str, Any]:
    """The client webhooks (OpenAPI 3.1 `webhooks`): what a request's `webhook` URL receives."""
    from shared.models import WebhookEvent

    headers = {
        "webhook-id": "Stable per event: deduplicate retries by it",
        "webhook-timestamp": "Unix seconds when this try was sent",
        "webhook-signature": "v1,<base64 HMAC-SHA256 of id.timestamp.body> with the whsec_ signing secret of the "
        "API key that submitted the job (or the deployment's); space-separated, one per valid secret (two during "
        "a rotation's grace period): accept any that matches",
    }
    body = {
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"type": "string", "enum": [e.value for e in WebhookEvent]},
            "timestamp": {"type": "string", "format": "date-time", "description": "When the event happened"},
            "data": {"$ref": "#/components/schemas/JobDetail"},
        },
    }
    return {
        event.value: {
            "post": {
                "summary": f"{event.value} (if listed in the request's webhook_events)",
                "description": "Signed the Standard Webhooks way; retried on timeouts, 429 and 5xx.",
                "parameters": [
                    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": d}
                    for name, d in headers.items()
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"2XX": {"description": "Received; anything else but 429 and 5xx stops retries"}},
            }
        }
        for event in WebhookEvent
    }


def swagger_html(document_json: str, title: str) -> str:
    """Swagger UI on the document, its assets inlined (works offline): those Powertools ships."""
    import aws_lambda_powertools

    assets = Path(aws_lambda_powertools.__file__).parent / "event_handler" / "openapi" / "swagger_ui"
    script = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    style = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
    spec = document_json.replace("</", "<\\/")  # the JSON cannot close the script element
    options = {"dom_id": "#swagger-ui", "deepLinking": True, "filter": True, "persistAuthorization": True}
    return f"""<!DOCTYPE html>
<html>
<head><meta charset="UTF-8"><title>{title}</title><style>{style}</style></head>
<body>
<div id="swagger-ui">Loading...</div>
<script>{script}</script>
<script>
SwaggerUIBundle(Object.assign({json.dumps(options)}, {{
  spec: {spec},
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
}}));
</script>
</body>
</html>
"""
