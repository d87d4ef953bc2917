"""The in-process path from boto3 to the emulated AWS endpoint.

Every AWS call the functions make is a real botocore call (parameters validated, serialized,
signed) to the emulation's endpoint. The endpoint is moto's server in this same process, so the
socket between them only costs: a connection, HTTP written and parsed on both sides, a server
thread per call. Under a burst that was about half the CPU of a job (`make load`). This botocore
`before-send` hook hands the prepared request to the same WSGI application the server runs (same
routing, same handlers, same response), and turns its answer into the HTTP response botocore
would have read. Requests to any other endpoint go out as usual, and the server still serves
everything that comes from outside (presigned S3 URLs, the AWS CLI, other processes).
"""

from __future__ import annotations

import io
import logging
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("local.moto_transport")


class _Body(io.BytesIO):
    """What botocore reads a response body from (it streams S3 objects)."""

    def stream(self, **_: Any) -> Any:
        while chunk := self.read(64 * 1024):
            yield chunk


class InProcessTransport:
    def __init__(self, endpoint: str, app: Any) -> None:
        """`app`: the WSGI application of moto's server listening on `endpoint`."""
        self.prefix = endpoint.rstrip("/") + "/"
        self.app = app
        self.calls = 0  # requests answered in process (tests check the path is taken)

    def install(self, session: Any) -> None:
        session.events.register("before-send", self)

    def __call__(self, request: Any, **_: Any) -> Any:
        if not request.url.startswith(self.prefix):
            return None
        from botocore.awsrequest import AWSResponse
        from werkzeug.test import run_wsgi_app

        try:
            app_iter, status, headers = run_wsgi_app(self.app, self._environ(request), buffered=True)
            body = b"".join(app_iter)
            code = int(status.split(" ", 1)[0])
        except Exception:  # the server answers an unhandled error with a 500, which botocore retries
            log.exception("the emulated %s %s failed", request.method, request.url)
            code, headers, body = 500, {}, b'{"__type": "InternalFailure", "message": "Internal Server Error"}'
        self.calls += 1
        return AWSResponse(request.url, code, dict(headers), _Body(body))

    @staticmethod
    def _environ(request: Any) -> dict[str, Any]:
        from moto.core.request import (
            PRESERVED_HEADER_NAMES_ENVIRON_KEY,
            environ_key_for_header,
            should_preserve_original_header_name,
        )
        from werkzeug.test import EnvironBuilder

        url = urlsplit(request.url)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        headers = {
            name: value.decode("latin-1") if isinstance(value, bytes) else value
            for name, value in request.headers.items()
        }
        environ = EnvironBuilder(
            method=request.method,
            base_url=f"{url.scheme}://{url.netloc}",
            path=url.path,
            query_string=url.query,
            headers=headers,
            data=body or b"",
        ).get_environ()
        # What moto's request handler adds: header names with underscores, as sent (S3 metadata).
        preserved = {
            environ_key_for_header(name): name for name in headers if should_preserve_original_header_name(name)
        }
        if preserved:
            environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = preserved
        return environ
