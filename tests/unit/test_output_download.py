"""Copying a provider's output file (shared/generation/outputs.py) from a real https file host
(played by a loopback server, tests/fake_internet.py): a redirect is never followed, wherever it
points, since the URL checked against REPLICATE_OUTPUT_HOSTS must be the one fetched."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from shared import safe_url
from shared.errors import InvalidOutput, TransientError
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


@pytest.mark.parametrize("address", ["10.0.0.7", "169.254.169.254", "127.0.0.1", "::ffff:192.168.1.1", "fd00::1"])
def test_an_allowed_host_that_resolves_to_a_private_address_is_never_fetched(internet, address):
    files = internet.https("evil.files.example.test", address, body=png())
    with pytest.raises(InvalidOutput, match="private, loopback or link-local"):
        fetch("https://evil.files.example.test/out/0.png")
    assert files.requests == []


def test_the_download_connects_to_the_address_that_was_checked(internet, monkeypatch):
    """DNS rebinding: the name answers a public address to the check, a private one afterwards;
    the download goes to the checked address (the name kept for Host and the certificate)."""
    files = internet.https("files.example.test", "93.184.216.34", body=png())
    del internet.routes[("files.example.test", 443)]  # a connection by name would not reach it
    answers = iter([["93.184.216.34"]])
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: next(answers, ["10.0.0.1"]))
    image = fetch("https://files.example.test/out/0.png?sig=abc")
    assert image.content_type == "image/png"
    assert [(r.path, r.headers["Host"]) for r in files.requests] == [("/out/0.png?sig=abc", "files.example.test")]


def test_an_output_host_that_does_not_resolve_is_retried_later(monkeypatch):
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: [])
    with pytest.raises(TransientError) as raised:
        fetch("https://files.example.test/out/0.png")
    assert raised.value.code == "OUTPUT_UNAVAILABLE"


def test_only_a_loopback_host_named_in_the_allowed_hosts_may_be_loopback(monkeypatch):
    """`localhost` listed by name (the local Replicate double) may resolve to loopback; a wildcard
    never lets a name reach loopback."""
    monkeypatch.setattr(safe_url, "resolve", lambda host, port: ["127.0.0.1"])
    with pytest.raises(InvalidOutput, match="loopback"):
        fetch_image("https://a.localhost/0.png", allowed_hosts=["*.localhost"], max_bytes=10, timeout=1)
    with pytest.raises(TransientError, match="could not be downloaded"):  # allowed: the connection is tried
        fetch_image("https://localhost:9/0.png", allowed_hosts=["localhost"], max_bytes=10, timeout=1)
