"""Webhook deliveries that must cost nothing: forged ones (no call to the provider, no 5xx) and
validly signed ones whose body is not a prediction we can read (acknowledged and ignored); and
the webhook function's public URL, which serves the webhook and nothing else."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from local.gateway import http_api_event
from local.replicate_double import ReplicateDouble, sign
from shared import webhooks
from shared.schemas import WEBHOOK_PATH
from tests.conftest import stats_of

SECRET_PATH = "/v1/webhooks/default/secret"
WEBHOOK = "/api/v1/webhooks/replicate?job_id=no-such-job&attempt=1&nonce=n"


@pytest.fixture(scope="module")
def double():
    with ReplicateDouble(starting_seconds=0.1, processing_seconds=0.5) as replicate:
        yield replicate


@pytest.fixture
def fetched_secret(double, configure):
    """Replicate configured without a stored webhook secret: the api fetches it (cold cache)."""
    configure(REPLICATE_API_TOKEN=double.token, REPLICATE_BASE_URL=double.base_url, REPLICATE_WEBHOOK_SECRET="")
    webhooks.forget_signing_secret()
    yield double
    webhooks.forget_signing_secret()


def secret_fetches(double: ReplicateDouble) -> int:
    return sum(1 for r in double.requests if r.path == SECRET_PATH)


def signed(secret: str, body: str, msg_id: str = "msg_1") -> dict[str, str]:
    now = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, msg_id, now, body),
        "content-type": "application/json",
    }


def test_a_thousand_forged_deliveries_cost_at_most_one_secret_fetch_and_no_5xx(api, fetched_secret):
    double = fetched_secret
    before = secret_fetches(double)
    body = json.dumps({"id": "p1", "status": "succeeded", "output": ["https://evil.example.com/x.png"]})
    forger = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="

    def forge(n: int) -> int:
        return api.post(WEBHOOK, content=body, headers=signed(forger, body, f"msg_{n}")).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = list(pool.map(forge, range(1000)))

    assert statuses.count(401) == 1000, {s: statuses.count(s) for s in set(statuses)}
    assert secret_fetches(double) - before <= 1, [r for r in double.requests if r.path == SECRET_PATH]
    # The genuine secret still verifies (no fetch needed: it is cached).
    response = api.post(WEBHOOK, content=body, headers=signed(double.webhook_secret, body))
    assert response.status_code == 200 and response.json() == {"outcome": "unknown job"}
    assert secret_fetches(double) - before <= 1


def test_unsigned_and_stale_deliveries_fetch_nothing(api, fetched_secret):
    double = fetched_secret
    before = secret_fetches(double)
    body = json.dumps({"id": "p1", "status": "processing"})
    stale = signed(double.webhook_secret, body) | {"webhook-timestamp": str(int(time.time()) - 3600)}
    for headers in ({}, stale):
        assert api.post(WEBHOOK, content=body, headers=headers).status_code == 401
    assert secret_fetches(double) == before


def test_a_stored_webhook_secret_means_no_fetch_at_all(api, fetched_secret, configure):
    double = fetched_secret
    configure(REPLICATE_WEBHOOK_SECRET=double.webhook_secret)
    before = secret_fetches(double)
    body = json.dumps({"id": "p1", "status": "processing"})
    assert api.post(WEBHOOK, content=body, headers=signed("whsec_" + "QkJC" * 8, body)).status_code == 401
    assert api.post(WEBHOOK, content=body, headers=signed(double.webhook_secret, body)).status_code == 200
    assert secret_fetches(double) == before


@pytest.mark.parametrize(
    "prediction",
    [
        {"id": "p1", "status": "processing", "logs": 42},
        {"id": "p1", "status": ["succeeded"]},
        {"id": 7, "status": "succeeded"},
        {"id": "p1", "status": "succeeded", "metrics": {"predict_time": "fast"}},
        {"id": "p1", "status": "succeeded", "metrics": 3},
        {"id": "p1", "status": "succeeded", "input": "x", "output": 5},
    ],
)
def test_a_signed_delivery_with_wrongly_typed_fields_is_ignored_not_a_500(api, fetched_secret, prediction):
    body = json.dumps(prediction)
    response = api.post(WEBHOOK, content=body, headers=signed(fetched_secret.webhook_secret, body))
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "ignored: malformed prediction"}


def test_a_signed_delivery_nested_past_the_interpreters_limit_is_a_422_not_a_500(api, fetched_secret):
    depth = 30_000  # 60 KB: under the body limit, past Python's recursion limit
    body = '{"id": "p1", "status": "succeeded", "logs": ' + "[" * depth + "]" * depth + "}"
    response = api.post(WEBHOOK, content=body, headers=signed(fetched_secret.webhook_secret, body))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/generate"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/stats"),
        ("POST", "/admin/v1/generate"),
        ("GET", "/health"),
        ("GET", "/openapi.json"),
        ("GET", WEBHOOK_PATH),
        ("POST", WEBHOOK_PATH + "/"),
        ("POST", "/"),
    ],
)
def test_the_webhook_url_serves_nothing_but_the_webhook(api, emulator, method, path):
    """Deployed, the webhook function has a public URL (no authorizer): every other path or method
    that reaches it is a 404, whatever it would have been on the API, and changes nothing."""
    before = stats_of(api, emulator)["total_jobs"]
    body = json.dumps({"prompt": "a lighthouse"}).encode()
    event = http_api_event(method, path, {"content-type": "application/json"}, body, "203.0.113.7")
    reply = emulator.runtime.invoke("webhook", event)
    assert reply["statusCode"] == 404, reply
    assert json.loads(reply["body"])["code"] == "NOT_FOUND"
    assert stats_of(api, emulator)["total_jobs"] == before


def test_an_oversized_or_undecodable_delivery_is_refused_before_its_signature_is_checked(api, fetched_secret):
    double = fetched_secret
    before = secret_fetches(double)
    big = json.dumps({"id": "p1", "status": "processing", "logs": "x" * 70_000})
    response = api.post(WEBHOOK, content=big, headers=signed(double.webhook_secret, big))
    assert response.status_code == 413 and response.json()["code"] == "PAYLOAD_TOO_LARGE"
    response = api.post(WEBHOOK, content=b"\xff\xfe not text", headers={"content-type": "application/octet-stream"})
    assert response.status_code == 401 and response.json()["code"] == "INVALID_SIGNATURE"
    assert secret_fetches(double) == before
