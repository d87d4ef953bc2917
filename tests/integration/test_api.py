"""The HTTP contract: status codes, the one error shape, validation naming the field, listing
with filter and cursor, docs. Through the gateway, against the emulation."""

from __future__ import annotations

import pytest

from tests.conftest import stats_of, submit, unique_prompt, wait_until_done

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert body["detail"]
    assert body["request_id"]
    assert "Traceback" not in response.text and "arn:aws" not in response.text
    return body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/status/{UNKNOWN}"),
        ("GET", f"/api/v1/jobs/{UNKNOWN}"),
        ("POST", f"/api/v1/jobs/{UNKNOWN}/cancel"),
        ("POST", f"/api/v1/jobs/{UNKNOWN}/retry"),
        ("GET", "/api/v1/jobs/stats%230"),  # a counter item is not a job
    ],
)
def test_unknown_job_is_404(api, method, path):
    body = assert_error(api.request(method, path), 404, "JOB_NOT_FOUND")
    assert "not found" in body["detail"]


def test_unknown_route_is_404_in_the_same_shape(api):
    assert_error(api.get("/api/v2/whatever"), 404, "NOT_FOUND")


def test_cancelling_a_completed_job_is_409(api):
    job_id = submit(api, width=64, height=64)
    assert wait_until_done(api, job_id)["status"] == "completed"
    body = assert_error(api.post(f"/api/v1/jobs/{job_id}/cancel"), 409, "INVALID_STATE")
    assert "completed" in body["detail"]
    assert api.get(f"/api/v1/status/{job_id}").json()["status"] == "completed"


@pytest.mark.parametrize("state", ["pending", "completed"])
def test_retrying_a_job_that_did_not_fail_is_409(api, emulator, state):
    if state == "pending":
        with emulator.dispatch_paused():
            job_id = submit(api)
            body = assert_error(api.post(f"/api/v1/jobs/{job_id}/retry"), 409, "INVALID_STATE")
            api.post(f"/api/v1/jobs/{job_id}/cancel")
    else:
        job_id = submit(api, width=64, height=64)
        wait_until_done(api, job_id)
        body = assert_error(api.post(f"/api/v1/jobs/{job_id}/retry"), 409, "INVALID_STATE")
    assert "failed or cancelled" in body["detail"]


def test_cancelling_twice_is_409(api, emulator):
    with emulator.dispatch_paused():
        job_id = submit(api)
        assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
        assert_error(api.post(f"/api/v1/jobs/{job_id}/cancel"), 409, "INVALID_STATE")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "ok", "colour": "red"}, "colour"),
        ({"prompt": "ok", "parameters": {"sampler": "euler"}}, "parameters.sampler"),
        ({"prompt": "ok", "parameters": {"width": 4096}}, "parameters.width"),
        ({"prompt": "ok", "parameters": {"height": 32}}, "parameters.height"),
        ({"prompt": "ok", "parameters": {"width": 513}}, "parameters.width"),
        ({"prompt": "ok", "parameters": {"num_inference_steps": 0}}, "parameters.num_inference_steps"),
        ({"prompt": "ok", "parameters": {"guidance_scale": 31}}, "parameters.guidance_scale"),
        ({"prompt": "ok", "parameters": {"num_outputs": 5}}, "parameters.num_outputs"),
        ({"prompt": "ok", "parameters": {"seed": -1}}, "parameters.seed"),
        ({"prompt": "ok", "parameters": "big"}, "parameters"),
    ],
)
def test_invalid_input_is_422_naming_the_field_and_stores_nothing(api, emulator, body, field):
    before = stats_of(api, emulator)["total_jobs"]
    response = api.post("/api/v1/generate", json=body)
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert field in [e["field"] for e in error["errors"]], error
    assert field in error["detail"]
    assert stats_of(api, emulator)["total_jobs"] == before


def test_a_body_that_is_not_json_is_422(api):
    response = api.post("/api/v1/generate", content=b"{not json", headers={"content-type": "application/json"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "done"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_invalid_list_query_is_422_naming_the_field(api, query, field):
    error = assert_error(api.get("/api/v1/jobs", params=query), 422, "VALIDATION_ERROR")
    assert field in error["detail"]


def test_a_cursor_from_another_filter_is_refused(api, emulator):
    with emulator.dispatch_paused():
        ids = [submit(api) for _ in range(2)]
        page = api.get("/api/v1/jobs", params={"status": "pending", "limit": 1}).json()
        for job_id in ids:
            api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert page["next_cursor"]
    response = api.get("/api/v1/jobs", params={"status": "failed", "cursor": page["next_cursor"]})
    assert_error(response, 422, "VALIDATION_ERROR")


def test_listing_by_status_pages_through_every_job_newest_first(api, emulator):
    tag = unique_prompt("listing")
    with emulator.dispatch_paused():
        ids = [submit(api, f"{tag} #{n}") for n in range(5)]
        seen: list[dict] = []
        cursor = None
        while True:
            params = {"status": "pending", "limit": 2} | ({"cursor": cursor} if cursor else {})
            response = api.get("/api/v1/jobs", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["jobs"]) <= 2
            seen += page["jobs"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        ours = [job for job in seen if job["prompt"].startswith(tag)]
        assert [job["job_id"] for job in ours] == list(reversed(ids)), "every job once, newest first"
        assert all(job["status"] == "pending" for job in seen)
        for job_id in ids:
            api.post(f"/api/v1/jobs/{job_id}/cancel")
    cancelled = api.get("/api/v1/jobs", params={"status": "cancelled", "limit": 100}).json()["jobs"]
    assert set(ids) <= {job["job_id"] for job in cancelled}
    pending = api.get("/api/v1/jobs", params={"status": "pending", "limit": 100}).json()["jobs"]
    assert not set(ids) & {job["job_id"] for job in pending}


def test_listing_without_filter_shows_every_status(api, emulator):
    done = submit(api, width=64, height=64)
    wait_until_done(api, done)
    with emulator.dispatch_paused():
        waiting = submit(api)
        first = api.get("/api/v1/jobs", params={"limit": 1}).json()
        assert [job["job_id"] for job in first["jobs"]] == [waiting]
        second = api.get("/api/v1/jobs", params={"limit": 100, "cursor": first["next_cursor"]}).json()
        api.post(f"/api/v1/jobs/{waiting}/cancel")
    assert done in {job["job_id"] for job in second["jobs"]}


def test_status_is_cheap_and_has_progress(api):
    job_id = submit(api, width=64, height=64)
    status = api.get(f"/api/v1/status/{job_id}").json()
    assert set(status) >= {"job_id", "status", "progress", "attempt", "created_at", "updated_at"}
    assert 0 <= status["progress"] <= 100
    wait_until_done(api, job_id)


def test_health(api):
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "mode": "mock", "version": "1.0.0"}


def test_docs_are_served_offline(api):
    response = api.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "SwaggerUIBundle" in html, "the Swagger UI bundle is inlined"
    assert "cdn." not in html and "unpkg.com" not in html, "nothing is fetched from the internet"
    assert "/api/v1/generate" in html


def test_openapi_document_lists_every_route(api):
    document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/api/v1/generate",
        "/api/v1/status/{job_id}",
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/retry",
        "/api/v1/stats",
        "/health",
    }
    assert "202" in document["paths"]["/api/v1/generate"]["post"]["responses"]


def test_an_unexpected_error_is_500_without_details(api, monkeypatch):
    from shared.job_store import JobStore

    def broken(self):
        raise RuntimeError("boom at arn:aws:dynamodb:us-east-1:123456789012:table/media-jobs")

    monkeypatch.setattr(JobStore, "stats", broken)
    body = assert_error(api.get("/api/v1/stats"), 500, "INTERNAL_ERROR")
    assert "boom" not in body["detail"]
