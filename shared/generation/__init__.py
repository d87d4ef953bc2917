"""Generation: how an attempt's images get made, behind one port that both generators implement.

`generation()` chooses the implementation once, from the settings: the mock generator when no
provider is configured (shared/generation/mock.py), else Replicate (shared/generation/replicate.py).
The worker (shared/attempt.py) drives either through the same steps: start the attempt's
prediction, poll it until it ends (or, when the provider calls back, wait for its webhook), take
its outputs, cancel it when the job stops. A prediction's status is a PredictionState whichever
side made it: the provider's JSON (a poll, or a signed webhook in shared/webhooks.py) or the
mock's run in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from shared.observability import logger
from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    from shared.generation.predictions import PredictionState
    from shared.models import Job

ProgressCallback = Callable[[float], None]
"""Called with the fraction done, 0.0 to 1.0."""


class GeneratedImage(NamedTuple):
    data: bytes
    content_type: str
    width: int
    height: int
    metadata: dict[str, str]


class Outputs(NamedTuple):
    images: list[GeneratedImage]
    metadata: dict[str, str]  # stored with every image, on top of the image's own


@dataclass(frozen=True)
class Run:
    """What the attempt gives a start: its time, its progress and its bookkeeping."""

    until: float  # time.time() this call may not pass: the job's deadline or the worker's end, the earlier
    on_progress: Callable[[int | None], None]  # job progress 0-99; None: alive, no news
    record: Callable[[dict[str, Any]], None]  # writes prediction fields on the running attempt
    # True in Generate. Collect only picks up where Generate left off: a generation that runs in
    # the worker's own process belongs to the Generate state running it, and is never started twice.
    inline: bool
    # The write that started the job already set `prediction_requested_at` (a create follows at
    # once), so no earlier create can exist to look for, and the mark needs no write of its own.
    create_marked: bool = False


class Generation(Protocol):
    calls_back: bool
    """Whether the end of a prediction is announced by a webhook (the workflow then waits for
    free); otherwise the worker polls."""
    remote: bool
    """Whether a prediction is created at a provider (a billed create that must never be sent twice)."""

    def start(self, job: Job, run: Run) -> PredictionState:
        """The attempt's prediction: the one it already has, else a new one; never two. It may
        come back finished (the mock's, a sync-mode create) or still running."""
        ...

    def poll(self, prediction_id: str) -> PredictionState: ...

    def cancel(self, prediction_id: str) -> None: ...

    def outputs(self, job: Job, prediction: PredictionState, on_progress: Callable[[int], None]) -> Outputs:
        """The images of a succeeded prediction and the metadata to store with them."""
        ...


def generation(settings: Settings | None = None) -> Generation:
    """The one place that tells mock from Replicate. Cheap: nothing is read or called until used."""
    settings = settings or get_settings()
    if settings.mock_mode:
        from shared.generation.mock import MockGeneration

        return MockGeneration(settings)
    from shared.generation.replicate import ReplicateGeneration

    return ReplicateGeneration(settings)


def cancel_quietly(generator: Generation, prediction_id: str) -> None:
    """Cancel, best effort: a clean-up that fails must not fail what called it."""
    try:
        generator.cancel(prediction_id)
    except Exception:
        logger.warning("Could not cancel the prediction", extra={"prediction_id": prediction_id})
