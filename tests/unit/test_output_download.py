"""Copying a provider's output file (shared/generation/outputs.py) from a real https file host
(played by a loopback server, tests/fake_internet.py): a redirect is never followed, wherever it
points, since the URL checked against REPLICATE_OUTPUT_HOSTS must be the one fetched."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from shared.errors import InvalidOutput
from shared.generation.outputs import fetch_image

METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
ALLOWED = ["files.example.test", "*.files.example.test"]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 4), "red").save(out, "PNG")
    return out.getvalue()


def fetch(url: str):
    return fetch_image(url, allowed_hosts=ALLOWED, max_bytes=1_000_000, timeout=5)


def test_a_file_on_an_allowed_host_is_copied(internet):
    files = internet.https("files.example.test", "93.184.216.34", body=png(), headers={"Content-Type": "image/png"})
    image = fetch("https://files.example.test/out/0.png")
    assert (image.content_type, image.width, image.height) == ("image/png", 8, 4)
    assert [r.path for r in files.requests] == ["/out/0.png"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_the_metadata_address_is_not_followed(internet, status):
    metadata = internet.http("169.254.169.254")
    files = internet.https("files.example.test", "93.184.216.34", status=status, headers={"Location": METADATA_URL})
    with pytest.raises(InvalidOutput, match=f"answered HTTP {status}"):
        fetch("https://files.example.test/out/0.png")
    assert [r.path for r in files.requests] == ["/out/0.png"]
    assert metadata.requests == []

    # The stand-in is where a client that follows redirects would have landed.
    with httpx.Client(follow_redirects=True) as follower:
        follower.get("https://files.example.test/out/0.png")
    assert len(metadata.requests) == 1


def test_a_redirect_to_another_allowed_host_is_not_followed_either(internet):
    other = internet.https("cdn.files.example.test", "93.184.216.35", body=png())
    internet.https(
        "files.example.test", "93.184.216.34", status=302, headers={"Location": "https://cdn.files.example.test/0.png"}
    )
    with pytest.raises(InvalidOutput, match="answered HTTP 302"):
        fetch("https://files.example.test/out/0.png")
    assert other.requests == []
