from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from shared.errors import DeadlineExceeded
from shared.generation.mock import MockGenerator
from shared.models import GenerateRequest


def request(**parameters) -> GenerateRequest:
    return GenerateRequest(prompt="a red fox in the snow, watercolour", parameters=parameters)


def test_draws_pngs_of_the_requested_size_and_count():
    images = MockGenerator(seconds=0).generate(
        request(width=320, height=200, num_outputs=2, seed=7), on_progress=lambda _: None, deadline=time.time() + 10
    )
    assert len(images) == 2
    for index, image in enumerate(images):
        decoded = Image.open(io.BytesIO(image.data))
        assert (decoded.format, decoded.size) == ("PNG", (320, 200))
        assert (image.width, image.height, image.content_type) == (320, 200, "image/png")
        assert image.metadata["seed"] == str(7 + index)
    assert images[0].data != images[1].data


def test_same_seed_same_image():
    generate = MockGenerator(seconds=0).generate
    first = generate(request(width=64, height=64, seed=1), on_progress=lambda _: None, deadline=time.time() + 5)
    again = generate(request(width=64, height=64, seed=1), on_progress=lambda _: None, deadline=time.time() + 5)
    assert first[0].data == again[0].data


def test_takes_about_the_configured_time_and_reports_rising_progress():
    seen: list[float] = []
    started = time.monotonic()
    MockGenerator(seconds=0.5).generate(
        request(width=64, height=64), on_progress=seen.append, deadline=time.time() + 10
    )
    assert 0.45 <= time.monotonic() - started < 1.5
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 5


def test_stops_at_the_deadline():
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        MockGenerator(seconds=30).generate(request(), on_progress=lambda _: None, deadline=time.time() + 0.5)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(("width", "height"), [(1024, 1024), (320, 200), (64, 2048), (2048, 64)])
def test_the_gradient_is_blended_on_a_strip_with_the_same_pixels_as_on_the_whole_image(width, height):
    """Blending the whole image cost a 1024x1024 job 14 ms of CPU; the strip costs 3 ms, and the
    images (and so their PNG bytes) are the same."""
    import hashlib

    from shared.generation.mock import _draw

    seed = 11
    top = tuple(hashlib.sha256(str(seed).encode()).digest()[:3])
    bottom = tuple(255 - c for c in top)
    whole = Image.composite(
        Image.new("RGB", (width, height), bottom),
        Image.new("RGB", (width, height), top),
        Image.linear_gradient("L").resize((width, height)),
    )
    drawn = Image.open(io.BytesIO(_draw("", width, height, seed).data)).convert("RGB")
    caption_top = height - height // 10 - max(12, min(width, height) // 24)  # the caption is drawn below
    box = (0, 0, width, max(1, caption_top))
    assert drawn.crop(box).tobytes() == whole.crop(box).tobytes()
