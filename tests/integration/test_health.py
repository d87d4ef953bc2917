"""/health: liveness that calls nothing; ?deep=true: the table, queue, bucket and workflow answer."""

from __future__ import annotations

import pytest


def test_health_is_cheap_liveness(api):
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy" and response.json().get("checks") is None


def test_deep_health_checks_every_part(api):
    response = api.get("/health", params={"deep": "true"})
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"table": "ok", "queue": "ok", "bucket": "ok", "workflow": "ok"}


@pytest.mark.parametrize(
    ("setting", "value", "part"),
    [
        ("JOBS_TABLE_NAME", "no-such-table", "table"),
        ("JOBS_QUEUE_URL", "http://127.0.0.1:1/123456789012/no-such-queue", "queue"),
        ("OUTPUTS_BUCKET_NAME", "no-such-bucket", "bucket"),
        ("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:no-such-machine", "workflow"),
    ],
)
def test_deep_health_is_503_naming_the_part_that_failed(api, configure, setting, value, part):
    configure(**{setting: value})
    response = api.get("/health", params={"deep": "true"})
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unhealthy"
    assert {name for name, state in body["checks"].items() if state != "ok"} == {part}
    assert "arn:" not in response.text and "123456789012" not in response.text
