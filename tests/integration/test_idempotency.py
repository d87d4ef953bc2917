"""Idempotency-Key on POST /generate and POST /jobs/{id}/retry, on the emulation."""

from __future__ import annotations

import threading
import uuid

import pytest

from shared.aws import client
from shared.settings import get_settings
from tests.conftest import unique_prompt, wait_until_done

GENERATE = "/api/v1/generate"


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def jobs_with_prompt(prompt: str) -> list[str]:
    # A scan is fine in a test: it checks that nothing else was stored.
    items = client("dynamodb").scan(TableName=get_settings().jobs_table_name)["Items"]
    return [i["pk"]["S"] for i in items if prompt in str(i.get("request", ""))]


def test_the_same_key_and_body_replay_the_first_answer_and_create_nothing(api):
    headers, body = key(), {"prompt": unique_prompt("idem")}

    first = api.post(GENERATE, json=body, headers=headers)
    again = api.post(GENERATE, json=body, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert jobs_with_prompt(body["prompt"]) == [first.json()["job_id"]]


def test_without_a_key_every_post_is_a_new_job(api):
    body = {"prompt": unique_prompt("no key")}
    ids = {api.post(GENERATE, json=body).json()["job_id"] for _ in range(2)}
    assert len(ids) == 2


def test_the_same_key_with_another_body_is_refused_naming_the_header(api):
    headers = key()
    first = api.post(GENERATE, json={"prompt": unique_prompt("first")}, headers=headers)
    other = unique_prompt("other")

    reused = api.post(GENERATE, json={"prompt": other}, headers=headers)

    assert first.status_code == 202
    assert reused.status_code == 422
    error = reused.json()
    assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert error["errors"] == [
        {"field": "Idempotency-Key", "location": "header", "message": "already used for a different request"}
    ]
    assert jobs_with_prompt(other) == []


def test_a_key_used_on_generate_cannot_retry_a_job(api):
    headers = key()
    job_id = api.post(GENERATE, json={"prompt": unique_prompt()}, headers=headers).json()["job_id"]
    assert api.post(f"/api/v1/jobs/{job_id}/retry", headers=headers).json()["code"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize("value", ["", "x" * 256])
def test_a_malformed_key_is_refused_and_nothing_stored(api, value):
    prompt = unique_prompt("bad key")
    response = api.post(GENERATE, json={"prompt": prompt}, headers={"Idempotency-Key": value})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["idempotency-key"]
    assert jobs_with_prompt(prompt) == []


def test_a_concurrent_duplicate_gets_409_while_the_first_is_in_flight(api, monkeypatch):
    from shared import jobs

    entered, release = threading.Event(), threading.Event()
    real_submit = jobs.submit

    def slow_submit(request, *args):
        entered.set()
        assert release.wait(10)
        return real_submit(request, *args)

    monkeypatch.setattr(jobs, "submit", slow_submit)
    headers, body = key(), {"prompt": unique_prompt("concurrent")}
    answers = {}
    first = threading.Thread(target=lambda: answers.setdefault("first", api.post(GENERATE, json=body, headers=headers)))
    first.start()
    assert entered.wait(10)

    duplicate = api.post(GENERATE, json=body, headers=headers)
    release.set()
    first.join(10)

    assert duplicate.status_code == 409 and duplicate.json()["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert answers["first"].status_code == 202
    replay = api.post(GENERATE, json=body, headers=headers)
    assert replay.json()["job_id"] == answers["first"].json()["job_id"]
    assert len(jobs_with_prompt(body["prompt"])) == 1


def test_a_failed_submit_leaves_the_key_free_for_a_retry(api, monkeypatch):
    from shared import jobs
    from shared.errors import QueueUnavailable

    real_submit, calls = jobs.submit, []

    def flaky(request, *args):
        calls.append(request)
        if len(calls) == 1:
            raise QueueUnavailable("Could not queue the job")
        return real_submit(request, *args)

    monkeypatch.setattr(jobs, "submit", flaky)
    headers, body = key(), {"prompt": unique_prompt("flaky")}

    assert api.post(GENERATE, json=body, headers=headers).status_code == 503
    assert api.post(GENERATE, json=body, headers=headers).status_code == 202


def test_retry_with_a_key_starts_one_new_attempt(api, faults):
    from shared.errors import PermanentError

    prompt = unique_prompt("retry idem")
    faults.script(prompt, PermanentError("no"))
    job_id = api.post(GENERATE, json={"prompt": prompt}).json()["job_id"]
    assert wait_until_done(api, job_id)["status"] == "failed"
    headers = key()

    first = api.post(f"/api/v1/jobs/{job_id}/retry", headers=headers)
    again = api.post(f"/api/v1/jobs/{job_id}/retry", headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert wait_until_done(api, job_id)["attempt"] == 2
