"""The generator used without a Replicate token: real PNGs drawn with Pillow, at the requested size,
showing the prompt, made in about MOCK_GENERATION_SECONDS with progress along the way."""

from __future__ import annotations

import hashlib
import io
import textwrap
import time

from shared.errors import DeadlineExceeded
from shared.generation import GeneratedImage, ProgressCallback
from shared.models import GenerateRequest

STEPS = 10


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
    # A vertical gradient between two seed-derived colours: cheap, and different per seed.
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), gradient)
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
