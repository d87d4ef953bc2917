"""Copying a provider's output files into our storage, safely.

Provider files vanish within the hour, so they are copied at once. Each URL must be https, on an
allowed host (REPLICATE_OUTPUT_HOSTS), and that host must resolve to public addresses (the SSRF
check of client webhooks, shared/safe_url.py) before anything is fetched; the download connects to
the checked address, uses a plain HTTP client (never the provider client, which would send our
token along), follows no redirects, has timeouts and a size cap, and the bytes must decode as an
image. Only a loopback host named as such in the allowed hosts (`localhost`, `127.0.0.1`, `::1`:
the local Replicate double) may be reached at a loopback address.
"""

from __future__ import annotations

import io
from fnmatch import fnmatch
from urllib.parse import urlsplit

from shared import safe_url
from shared.errors import InvalidOutput, TransientError
from shared.generation import GeneratedImage

IMAGE_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg"}
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def host_allowed(url: str, patterns: list[str]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and bool(host) and any(fnmatch(host, pattern) for pattern in patterns)


def fetch_image(url: str, *, allowed_hosts: list[str], max_bytes: int, timeout: float) -> GeneratedImage:
    if not host_allowed(url, allowed_hosts):
        raise InvalidOutput("The provider returned an output URL outside the allowed hosts")
    host = (urlsplit(url).hostname or "").lower()
    try:
        target = safe_url.check(url, allow_private=host in LOOPBACK_HOSTS and host in allowed_hosts)
    except safe_url.Unresolved:
        raise TransientError("An output file's host does not resolve", code="OUTPUT_UNAVAILABLE") from None
    except safe_url.UnsafeUrl as exc:
        raise InvalidOutput(f"The provider returned an output URL that {exc}") from None
    return _as_image(_download(target, max_bytes=max_bytes, timeout=timeout))


def _download(target: safe_url.Target, *, max_bytes: int, timeout: float) -> bytes:
    import httpx

    url, host_header, extensions = safe_url.pinned(target)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as http:
            request = http.build_request("GET", url, headers=host_header | {"Accept": "image/*"}, extensions=extensions)
            response = http.send(request, stream=True)
            try:
                if response.status_code >= 500 or response.status_code == 429:
                    raise TransientError(
                        f"The output file answered HTTP {response.status_code}", code="OUTPUT_UNAVAILABLE"
                    )
                if response.status_code != 200:
                    raise InvalidOutput(f"The output file answered HTTP {response.status_code}")
                declared = int(response.headers.get("content-length") or 0)
                if declared > max_bytes:
                    raise InvalidOutput(f"An output file is larger than {max_bytes} bytes")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise InvalidOutput(f"An output file is larger than {max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                response.close()
    except httpx.TimeoutException:
        raise TransientError("Downloading an output file timed out", code="OUTPUT_UNAVAILABLE") from None
    except httpx.TransportError:
        raise TransientError("An output file could not be downloaded", code="OUTPUT_UNAVAILABLE") from None


def _as_image(data: bytes) -> GeneratedImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:  # verify() leaves the image unusable
            image.load()
            fmt, (width, height) = image.format, image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise InvalidOutput("An output file is not a valid image") from None
    if fmt not in IMAGE_TYPES:
        raise InvalidOutput(f"An output file is a {fmt} image, not one of {', '.join(IMAGE_TYPES)}")
    return GeneratedImage(data=data, content_type=IMAGE_TYPES[fmt], width=width, height=height, metadata={})
