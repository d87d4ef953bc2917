"""Image generators. The worker asks `generator()` for the one the settings call for."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from shared.models import GenerateRequest
from shared.settings import get_settings

ProgressCallback = Callable[[float], None]
"""Called with the fraction done, 0.0 to 1.0."""


class GeneratedImage(NamedTuple):
    data: bytes
    content_type: str
    width: int
    height: int
    metadata: dict[str, str]


class Generator(Protocol):
    def generate(
        self, request: GenerateRequest, *, on_progress: ProgressCallback, deadline: float
    ) -> list[GeneratedImage]:
        """Produce the images. `deadline` is a time.time() value the generator must not run past."""
        ...


def generator() -> Generator:
    settings = get_settings()
    if settings.mock_mode:
        from shared.generation.mock import MockGenerator

        return MockGenerator(seconds=settings.mock_generation_seconds)
    # With a provider the worker runs predictions (shared/generation/replicate.py), not a Generator.
    raise RuntimeError("A provider is configured: the mock generator is not used")
