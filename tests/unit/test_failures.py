"""How workflow errors become a job's stable error code and safe message."""

from __future__ import annotations

import json

import pytest

from shared.errors import DeadlineExceeded, PermanentError, TransientError, parse_error_message
from shared.jobs import describe_failure
from shared.settings import get_settings


def lambda_cause(exc: Exception) -> str:
    return json.dumps(
        {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": ['  File "/var/task/x.py"']}
    )


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (TransientError("Replicate answered 503"), "PROVIDER_UNAVAILABLE", "Replicate answered 503"),
        (PermanentError("Flagged", code="CONTENT_REJECTED"), "CONTENT_REJECTED", "Flagged"),
        (DeadlineExceeded("Too slow"), "JOB_TIMEOUT", "The job did not finish within {timeout} seconds"),
    ],
)
def test_our_errors_keep_their_code_and_message(exc, code, message):
    expected = message.format(timeout=get_settings().job_timeout)  # timeouts always say the setting
    assert describe_failure(type(exc).__name__, lambda_cause(exc)) == (code, expected)


@pytest.mark.parametrize("error", ["States.Timeout", "States.HeartbeatTimeout"])
def test_timeouts_are_job_timeouts(error):
    code, message = describe_failure(error, None)
    assert code == "JOB_TIMEOUT" and "did not finish within" in message


def test_lambda_service_errors_say_the_worker_was_unavailable():
    assert describe_failure("Lambda.TooManyRequestsException", "Rate exceeded")[0] == "WORKER_UNAVAILABLE"


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("KeyError", lambda_cause(KeyError("aws_secret_access_key"))),
        ("States.Runtime", "arn:aws:lambda:us-east-1:123456789012:function:worker failed"),
        ("PermanentError", "not json"),
        ("PermanentError", json.dumps({"errorMessage": "no code here"})),
        (None, None),
    ],
)
def test_anything_else_is_an_internal_error_that_leaks_nothing(error, cause):
    code, message = describe_failure(error, cause)
    assert code == "INTERNAL_ERROR"
    assert "arn:" not in message and "secret" not in message and "File" not in message


def test_messages_are_capped():
    code, message = describe_failure("PermanentError", lambda_cause(PermanentError("x" * 5000)))
    assert code == "GENERATION_FAILED" and len(message) == 500


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("JOB_TIMEOUT: late", ("JOB_TIMEOUT", "late")),
        ("PROVIDER_429: slow down: now", ("PROVIDER_429", "slow down: now")),
        ("lower: case", (None, "lower: case")),
        ("No code", (None, "No code")),
        (None, (None, "")),
    ],
)
def test_parse_error_message(text, parsed):
    assert parse_error_message(text) == parsed
