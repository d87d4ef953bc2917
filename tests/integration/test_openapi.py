"""The OpenAPI document: valid, an operationId on every operation, ErrorBody for every error it
documents, the deployed API's SigV4 auth, and real responses conform to it."""

from __future__ import annotations

import json

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from tests.conftest import unique_prompt
from tests.integration.test_api import UNKNOWN

WEBHOOK = "/api/v1/webhooks/replicate"  # served by the webhook function, not an operation of this API


@pytest.fixture(scope="module")
def document(api) -> dict:
    return api.get("/openapi.json").json()


def operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_the_document_validates(document):
    validate(document)


def test_every_operation_has_a_stable_unique_operation_id(document):
    ids = [operation.get("operationId") for _, _, operation in operations(document)]
    assert all(ids) and len(ids) == len(set(ids)), ids
    assert {"generate", "getJobStatus", "getJob", "listJobs", "cancelJob", "retryJob"} <= set(ids)


def test_every_error_response_is_the_error_body(document):
    for path, method, operation in operations(document):
        codes = operation["responses"]
        assert {"422", "500"} <= set(codes), (method, path)
        for code, response in codes.items():
            if int(code) >= 400:
                schema = response["content"]["application/json"]["schema"]
                # A failed deep health check answers with the health report, naming the part.
                expected = "DeepHealth" if (path, code) == ("/health", "503") else "ErrorBody"
                assert schema == {"$ref": f"#/components/schemas/{expected}"}, (method, path, code)
    assert "HTTPValidationError" not in json.dumps(document["paths"])
    generate = document["paths"]["/api/v1/generate"]["post"]["responses"]
    assert {"202", "413", "415", "503"} <= set(generate)


def test_a_key_or_sigv4_is_required_everywhere_as_deployed(document):
    schemes = document["components"]["securitySchemes"]
    sigv4, bearer = schemes["sigv4"], schemes["apiKey"]
    assert sigv4["type"] == "apiKey" and sigv4["in"] == "header" and sigv4["name"] == "Authorization"
    assert sigv4["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert bearer["type"] == "http" and bearer["scheme"] == "bearer"
    for path, method, operation in operations(document):
        # As deployed: the API key on /api/v1 (401 when it is bad), IAM on /health.
        expected = [{"apiKey": []}] if path.startswith("/api/v1/") else [{"sigv4": []}]
        assert operation.get("security") == expected, (method, path)
        assert ("401" in operation["responses"]) == path.startswith("/api/v1/"), (method, path)
    assert WEBHOOK not in document["paths"], "the provider's webhook is no route of the HTTP API"


def conforms(document: dict, response, method: str, path: str) -> None:
    """The response's status is documented for the operation and its body matches the schema."""
    documented = document["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, (method, path, response.status_code, response.text)
    schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    OAS31Validator({**schema, "components": document["components"]}).validate(response.json())


def test_real_responses_conform_to_the_document(api, emulator, document):
    with emulator.dispatch_paused():
        accepted = api.post("/api/v1/generate", json={"prompt": unique_prompt()})
        conforms(document, accepted, "POST", "/api/v1/generate")
        job_id = accepted.json()["job_id"]
        samples = [
            ("GET", "/api/v1/status/{job_id}", f"/api/v1/status/{job_id}", None),
            ("GET", "/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}", None),
            ("GET", "/api/v1/jobs", "/api/v1/jobs?limit=2", None),
            ("POST", "/api/v1/jobs/{job_id}/retry", f"/api/v1/jobs/{job_id}/retry", None),  # 409: pending
            ("POST", "/api/v1/jobs/{job_id}/cancel", f"/api/v1/jobs/{job_id}/cancel", None),
            ("POST", "/api/v1/jobs/{job_id}/cancel", f"/api/v1/jobs/{job_id}/cancel", None),  # 409
            ("POST", "/api/v1/jobs/{job_id}/retry", f"/api/v1/jobs/{job_id}/retry", None),  # 202
            ("POST", "/api/v1/jobs/{job_id}/cancel", f"/api/v1/jobs/{job_id}/cancel", None),
            ("GET", "/api/v1/jobs/{job_id}", f"/api/v1/jobs/{UNKNOWN}", None),  # 404
            ("GET", "/api/v1/jobs", "/api/v1/jobs?offset=3", None),  # 422
            ("GET", "/api/v1/stats", "/api/v1/stats", None),
            ("GET", "/api/v1/models", "/api/v1/models", None),
            ("GET", "/health", "/health", None),
            ("POST", "/api/v1/generate", "/api/v1/generate", {"prompt": ""}),  # 422
        ]
        for method, template, url, body in samples:
            conforms(document, api.request(method, url, json=body), method, template)
    text = api.post("/api/v1/generate", content=b"x", headers={"content-type": "text/plain"})
    conforms(document, text, "POST", "/api/v1/generate")
