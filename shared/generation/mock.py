"""The generator used without a Replicate token: real PNGs drawn with Pillow, at the requested size,
showing the prompt, made in about MOCK_GENERATION_SECONDS with progress along the way."""

from __future__ import annotations

import hashlib
import io
import textwrap
import time
from collections.abc import Callable

from shared.errors import DeadlineExceeded
from shared.generation import GeneratedImage, Outputs, ProgressCallback, Run
from shared.generation.predictions import PredictionState
from shared.models import GenerateRequest, Job
from shared.settings import Settings

STEPS = 10


class MockGeneration:
    """The generation port on the mock generator. Its prediction runs inside the Generate state
    that starts it and comes back finished; seen from anywhere else (Collect) it is still running,
    since only that state can finish it (or the deadline end it). No webhooks, nothing to cancel."""

    calls_back = False
    remote = False

    def __init__(self, settings: Settings) -> None:
        self.generator = MockGenerator(seconds=settings.mock_generation_seconds)
        self._images: dict[str, list[GeneratedImage]] = {}

    def start(self, job: Job, run: Run) -> PredictionState:
        prediction_id = f"mock-{job.job_id}-{job.attempt}"
        if not run.inline:
            return self.poll(prediction_id)
        began = time.monotonic()
        self._images[prediction_id] = self.generator.generate(
            job.request, on_progress=lambda done: run.on_progress(int(done * 90)), deadline=run.until
        )
        return PredictionState(id=prediction_id, status="succeeded", predict_time=round(time.monotonic() - began, 3))

    def poll(self, prediction_id: str) -> PredictionState:
        return PredictionState(id=prediction_id, status="processing")

    def cancel(self, prediction_id: str) -> None:
        pass

    def outputs(self, job: Job, prediction: PredictionState, on_progress: Callable[[int], None]) -> Outputs:
        return Outputs(self._images.pop(prediction.id), {"generator": "mock"})


class MockGenerator:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def generate(
        self, request: GenerateRequest, *, on_progress: ProgressCallback, deadline: float
    ) -> list[GeneratedImage]:
        for step in range(STEPS):
            pause = self.seconds / STEPS
            if time.time() + pause > deadline:
                raise DeadlineExceeded("The job did not finish before its deadline")
            time.sleep(pause)
            on_progress((step + 1) / STEPS)
        params = request.parameters
        seed = params.seed if params.seed is not None else _seed_of(request.prompt)
        return [_draw(request.prompt, params.width, params.height, seed + index) for index in range(params.num_outputs)]


def _seed_of(prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


def _draw(prompt: str, width: int, height: int, seed: int) -> GeneratedImage:
    from PIL import Image, ImageDraw, ImageFont

    top = tuple(hashlib.sha256(str(seed).encode()).digest()[:3])
    bottom = tuple(255 - c for c in top)
    # A vertical gradient between two seed-derived colours, different per seed. Every row is one
    # colour, so it is blended on a one-pixel-wide strip and stretched: the same pixels as
    # blending the full image, at a fifth of the CPU.
    gradient = Image.linear_gradient("L").resize((1, height))
    strip = Image.composite(Image.new("RGB", (1, height), bottom), Image.new("RGB", (1, height), top), gradient)
    image = strip.resize((width, height), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, min(width, height) // 24))
    chars_per_line = max(10, int(width / (font.size * 0.6)))
    text = "\n".join(textwrap.wrap(prompt, chars_per_line)[:8])
    caption = f"MOCK {width}x{height} seed {seed}"
    draw.multiline_text((width // 20, height // 20), text, fill="white", font=font, stroke_width=2, stroke_fill="black")
    draw.text(
        (width // 20, height - height // 10), caption, fill="white", font=font, stroke_width=2, stroke_fill="black"
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return GeneratedImage(
        data=buffer.getvalue(),
        content_type="image/png",
        width=width,
        height=height,
        metadata={"generator": "mock", "seed": str(seed)},
    )
