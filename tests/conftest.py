"""Shared fixtures: one emulation for the session, an HTTP client on its gateway, helpers.

Waits are shortened through settings (generation, retry interval, deadlines); the real workflow
definition still runs every state.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message="No application metrics to publish")

from local.emulator import Emulator, free_port, with_queue  # noqa: E402
from local.invoke import SAMPLE_JOB_ID  # noqa: E402

if TYPE_CHECKING:
    from tests.fake_internet import FakeInternet

TEST_SETTINGS = {
    "MOCK_GENERATION_SECONDS": "0.5",
    "RETRY_INTERVAL_SECONDS": "1",
    "MAX_RETRY_ATTEMPTS": "2",
    "JOB_TIMEOUT": "60",
}
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    # A short visibility timeout and few receives, so poison messages reach the DLQ in seconds.
    queue = with_queue(visibility_timeout_seconds=1, max_receive_count=3)
    # The stats counters follow the jobs within a fraction of a second (deployed: up to the
    # stream's 10 s batching window); tests that read them call `settle_stats` first.
    with Emulator(api_port=free_port(), queue=queue, env=TEST_SETTINGS, stream_window_seconds=0.2) as emu:
        emu.runtime.async_retry_delays = (1.0, 2.0)  # Lambda's asynchronous retries, in seconds
        yield emu


@pytest.fixture(scope="session")
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    assert emulator.gateway
    with httpx.Client(base_url=emulator.gateway.url, timeout=30) as client:
        yield client


@pytest.fixture
def configure(emulator: Emulator) -> Iterator[Callable[..., None]]:
    """Change settings for one test (workflow definition included); restored afterwards."""
    saved: dict[str, str | None] = {}

    def apply(**env: str) -> None:
        for key in env:
            saved.setdefault(key, os.environ.get(key))
        emulator.configure(**env)

    yield apply
    if saved:
        restore = {k: v for k, v in saved.items() if v is not None}
        for key in (k for k, v in saved.items() if v is None):
            os.environ.pop(key, None)
        emulator.configure(**restore)


class Faults:
    """Scripted misbehaviour of the mock generator, per prompt: each generate() call takes the
    next step (an exception to raise, or a callable to run instead); then it behaves normally."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Any]] = {}
        self.calls: dict[str, int] = {}

    def script(self, prompt: str, *steps: Any) -> None:
        self.scripts[prompt] = list(steps)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    from shared.generation.mock import MockGenerator

    faults = Faults()
    real_generate = MockGenerator.generate

    def generate(self, request, *, on_progress, deadline):
        faults.calls[request.prompt] = faults.calls.get(request.prompt, 0) + 1
        steps = faults.scripts.get(request.prompt)
        if steps:
            step = steps.pop(0)
            if isinstance(step, BaseException):
                raise step
            return step(self, request, on_progress=on_progress, deadline=deadline)
        return real_generate(self, request, on_progress=on_progress, deadline=deadline)

    monkeypatch.setattr(MockGenerator, "generate", generate)
    return faults


@pytest.fixture
def internet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeInternet]:
    """Public hosts played by loopback servers (tests/fake_internet.py)."""
    from tests.fake_internet import FakeInternet

    fake = FakeInternet(monkeypatch, tmp_path)
    yield fake
    fake.close()


# ---- helpers -----------------------------------------------------------------------------------
def unique_prompt(label: str = "test") -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


def wait_for(check: Callable[[], Any], timeout: float = 20, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def submit(api: httpx.Client, prompt: str | None = None, **parameters: Any) -> str:
    body: dict[str, Any] = {"prompt": prompt or unique_prompt()}
    if parameters:
        body["parameters"] = parameters
    response = api.post("/api/v1/generate", json=body)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def status_of(api: httpx.Client, job_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/status/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_until_status(api: httpx.Client, job_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = status_of(api, job_id)
        return status if status["status"] in statuses else None

    return wait_for(reached, timeout=timeout, what=f"job {job_id} to be {'/'.join(statuses)}")


def wait_until_done(api: httpx.Client, job_id: str, timeout: float = 20) -> dict[str, Any]:
    wait_until_status(api, job_id, *TERMINAL, timeout=timeout)
    return api.get(f"/api/v1/jobs/{job_id}").json()


def executions_of(emulator: Emulator, job_id: str) -> list[dict[str, Any]]:
    from shared.aws import client

    assert emulator.resources
    pages = (
        client("stepfunctions")
        .get_paginator("list_executions")
        .paginate(stateMachineArn=emulator.resources.state_machine_arn)
    )
    return [e for page in pages for e in page["executions"] if e["name"].startswith(f"{job_id}-")]


def stats_of(api: httpx.Client, emulator: Emulator, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET /api/v1/stats once every change so far reached the counters (they follow the table's stream)."""
    emulator.counters.settle()
    response = api.get("/api/v1/stats", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def load_event(relative: str, job_id: str | None = None) -> dict[str, Any]:
    """A sample event from events/, with the sample job id replaced (each test makes its own job)."""
    text = (ROOT / "events" / relative).read_text()
    if job_id:
        text = text.replace(SAMPLE_JOB_ID, job_id)
    return json.loads(text)
