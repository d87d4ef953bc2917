"""The generation port: one factory tells mock from Replicate, and both answer the same calls."""

from __future__ import annotations

import time

from pydantic import SecretStr

from shared.generation import Run, generation
from shared.generation.mock import MockGeneration
from shared.generation.replicate import ReplicateGeneration
from shared.models import GenerateRequest, Job, JobStatus, utcnow
from shared.settings import Settings


def job() -> Job:
    now = utcnow()
    request = GenerateRequest(prompt="a lighthouse at dawn", parameters={"width": 64, "height": 128})
    return Job(job_id="j-1", status=JobStatus.PROCESSING, request=request, created_at=now, updated_at=now)


def run(inline: bool, progress: list | None = None, records: list | None = None) -> Run:
    return Run(
        until=time.time() + 10,
        on_progress=(progress if progress is not None else []).append,
        record=(records if records is not None else []).append,
        inline=inline,
    )


def test_the_settings_choose_the_generator_once():
    mock = generation(Settings(replicate_api_token=None, replicate_secret_arn=None))
    provider = generation(Settings(replicate_api_token=SecretStr("r8_x"), webhook_base_url="https://example.com"))
    assert isinstance(mock, MockGeneration) and not mock.calls_back
    assert isinstance(provider, ReplicateGeneration) and provider.calls_back


def test_the_mock_finishes_inside_generate_and_hands_over_its_images():
    port = MockGeneration(Settings(mock_generation_seconds=0))
    progress, records = [], []
    prediction = port.start(job(), run(inline=True, progress=progress, records=records))
    assert prediction.done and prediction.status == "succeeded" and prediction.predict_time is not None
    images, metadata = port.outputs(job(), prediction, on_progress=progress.append)
    assert [(i.width, i.height, i.content_type) for i in images] == [(64, 128, "image/png")]
    assert metadata == {"generator": "mock"}
    assert progress and max(progress) == 90  # generation is 0-90; storing the files does the rest
    assert records == []  # nothing to write down: no remote prediction to find again


def test_the_mock_is_never_started_again_from_collect():
    # Its run belongs to the Generate state running it: Collect sees it still running, and polls
    # until that state completes the job or the deadline ends it.
    port = MockGeneration(Settings(mock_generation_seconds=30))
    began = time.monotonic()
    prediction = port.start(job(), run(inline=False))
    assert not prediction.done and time.monotonic() - began < 1
    assert not port.poll(prediction.id).done
    port.cancel(prediction.id)  # nothing to cancel: a no-op
