"""Where the client connects and how it authenticates (no service needed: a mock transport answers)."""

from __future__ import annotations

import json

import httpx
import pytest
from mediagen import AsyncClient, Client, ConfigurationError

NOTHING = {"provider": 0, "aws": 0, "total": 0, "aws_parts": {}}
STATS = {
    "total_jobs": 0,
    "by_status": {},
    "success_rate": None,
    "average_duration_seconds": None,
    "metrics": {"jobs": 0, "total_seconds": {}, "mean_seconds": {}},
    "cost": {"jobs": 0, "total_usd": NOTHING, "mean_usd": None},
}


def recording() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=STATS)

    return seen, httpx.MockTransport(answer)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("MEDIAGEN_URL", "MEDIAGEN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_to_make_dev():
    assert Client().base_url == "http://127.0.0.1:8000"


def test_the_stack_outputs_file_then_the_environment_then_the_argument(monkeypatch, tmp_path):
    outputs = {"MediaGeneration-dev": {"ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com/", "Other": "x"}}
    (tmp_path / "cdk-outputs.json").write_text(json.dumps(outputs))
    assert Client(sigv4=False).base_url == "https://abc123.execute-api.eu-west-1.amazonaws.com"
    monkeypatch.setenv("MEDIAGEN_URL", "http://env:1")
    assert Client().base_url == "http://env:1"
    assert Client("http://arg:2").base_url == "http://arg:2"


def test_an_api_key_is_sent_as_a_bearer_token(monkeypatch):
    monkeypatch.setenv("MEDIAGEN_API_KEY", "k-123")
    seen, transport = recording()
    Client("http://svc", transport=transport).stats()
    assert seen[0].headers["authorization"] == "Bearer k-123"


def test_an_aws_url_without_a_key_is_sigv4_signed_for_its_region(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    seen, transport = recording()
    Client("https://abc123.execute-api.eu-west-1.amazonaws.com", transport=transport).stats()
    auth = seen[0].headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in auth and "x-amz-date" in seen[0].headers


@pytest.mark.parametrize(
    "url", ["http://[bad", "ftp://svc", "localhost:8000", "http://", "http://svc:99999", "http://a b"]
)
def test_a_url_that_cannot_work_is_refused_by_name(monkeypatch, url):
    with pytest.raises(ConfigurationError, match="invalid service URL") as refused:
        Client(url)
    assert repr(url) in str(refused.value)
    monkeypatch.setenv("MEDIAGEN_URL", url)
    with pytest.raises(ConfigurationError):
        AsyncClient()
