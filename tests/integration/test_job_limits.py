"""Bounds on a job: its attempts (the item keeps their history, and DynamoDB items are capped)."""

from __future__ import annotations

from tests.conftest import submit


def test_retry_past_max_attempts_per_job_is_a_409_and_changes_nothing(api, emulator, configure):
    configure(MAX_ATTEMPTS_PER_JOB="3")
    with emulator.dispatch_paused():
        job_id = submit(api)
        for attempt in (2, 3):
            assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
            response = api.post(f"/api/v1/jobs/{job_id}/retry")
            assert response.status_code == 202 and response.json()["message"] == f"Attempt {attempt} accepted"
        assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
        before = api.get(f"/api/v1/jobs/{job_id}").json()
        response = api.post(f"/api/v1/jobs/{job_id}/retry")
        assert response.status_code == 409, response.text
        error = response.json()
        assert error["code"] == "ATTEMPT_LIMIT_REACHED" and "3 attempts" in error["detail"]
        after = api.get(f"/api/v1/jobs/{job_id}").json()
    assert (after["status"], after["attempt"], len(after["attempts"])) == ("cancelled", 3, 3)
    assert after == before
