"""How the clients read answers (no service needed: a mock transport answers as scripted)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from mediagen import AsyncClient, Client, Conflict, UnexpectedResponse

ACCEPTED = {
    "job_id": "3f1c0000-0000-4000-8000-000000000000",
    "status": "pending",
    "message": "Job accepted",
    "created_at": "2026-01-01T00:00:00+00:00",
    "links": {"self": "/s", "status": "/st", "cancel": "/c", "retry": "/r"},
}
IN_PROGRESS = {"code": "IDEMPOTENCY_IN_PROGRESS", "detail": "a request with this key is still in progress"}


def scripted(*answers: httpx.Response) -> tuple[list[httpx.Request], httpx.MockTransport]:
    """Each request gets the next answer (the last one again when they run out)."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        script = answers[min(len(seen), len(answers)) - 1]
        return httpx.Response(script.status_code, headers=script.headers, content=script.content)  # a fresh one

    return seen, httpx.MockTransport(answer)


def both(answers: list[httpx.Response], call) -> list[tuple[object, list[httpx.Request]]]:
    """`call(client)` with the sync client, then the async one (its result or exception), each on
    its own scripted transport, with the requests it made. Backoff sleeps are skipped."""
    seen, transport = scripted(*answers)
    with Client("http://svc", transport=transport) as client:
        client._sleep = lambda seconds: None
        try:
            sync = call(client)
        except Exception as exc:
            sync = exc
    async_seen, async_transport = scripted(*answers)

    async def run():
        async with AsyncClient("http://svc", transport=async_transport) as client:
            client._sleep = _no_sleep
            try:
                return await call(client)
            except Exception as exc:
                return exc

    return [(sync, seen), (asyncio.run(run()), async_seen)]


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.mark.parametrize(
    "answer, expected",
    [
        (
            httpx.Response(200, text="<html>hi</html>", headers={"content-type": "text/html"}),
            "HTTP 200 text/html, not JSON",
        ),
        (httpx.Response(200, json={"hello": "world"}), "not a Stats"),
        (httpx.Response(200, json=[1, 2]), "not a Stats"),
        (
            httpx.Response(200, json={**dict.fromkeys(("total_jobs", "success_rate")), "by_status": {"gone": 1}}),
            "not a Stats",
        ),
    ],
    ids=["html", "other-json", "a-list", "unknown-status"],
)
def test_an_answer_that_is_not_the_services_is_an_unexpected_response(answer, expected):
    for result, _ in both([answer], lambda client: client.stats()):
        assert isinstance(result, UnexpectedResponse), result
        assert str(result) == f"unexpected response from http://svc/api/v1/stats: {expected}"


def test_a_submit_whose_key_is_in_flight_is_retried_with_the_same_key():
    busy = httpx.Response(409, json=IN_PROGRESS)
    for job, seen in both([busy, busy, httpx.Response(202, json=ACCEPTED)], lambda c: c.generate("x", wait=False)):
        assert job.id == ACCEPTED["job_id"], job
        assert len(seen) == 3 and len({r.headers["idempotency-key"] for r in seen}) == 1


def test_other_conflicts_are_not_retried():
    conflict = httpx.Response(409, json={"code": "INVALID_STATE", "detail": "job is completed"})
    for result, seen in both([conflict], lambda client: client.generate("x", wait=False)):
        assert isinstance(result, Conflict) and result.code == "INVALID_STATE"
        assert len(seen) == 1


def test_in_progress_on_an_unkeyed_post_is_final():
    """Only keyed submits may repeat: a 409 on any other POST (cancel) is final."""
    for result, seen in both([httpx.Response(409, json=IN_PROGRESS)], lambda c: c._request("POST", "/api/v1/x")):
        assert isinstance(result, Conflict)
        assert len(seen) == 1
