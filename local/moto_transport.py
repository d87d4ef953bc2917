"""The in-process path from boto3 to the emulated AWS endpoint.

Every AWS call the functions make is a real botocore call (parameters validated, serialized,
signed) to the emulation's endpoint. That endpoint is moto's server in this same process, so the
socket between them only cost: a connection, HTTP written and parsed on both sides, a server
thread, Flask, per call; under a burst, about half of a job's CPU (`make load`). This botocore
`before-send` hook answers a request to the endpoint the way moto's server would: the server's
own application picks the service (from the request's signature) and its URL map picks the
handler, and moto's handler answers the request as sent (its URL, headers and body), as in moto's
in-process mode. Requests to any other endpoint go out as usual, and the server still serves
everything from outside (presigned S3 URLs, the AWS CLI, other processes).
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

log = logging.getLogger("local.moto_transport")

INTERNAL_ERROR = b'{"__type": "InternalFailure", "message": "Internal Server Error"}'


class _Body(io.BytesIO):
    """What botocore reads a response body from (it streams S3 objects)."""

    def stream(self, **_: Any) -> Any:
        while chunk := self.read(64 * 1024):
            yield chunk


class InProcessTransport:
    def __init__(self, endpoint: str, server_app: Any) -> None:
        """`server_app`: the WSGI application of moto's server listening on `endpoint`."""
        self.prefix = endpoint.rstrip("/") + "/"
        self.server_app = server_app
        self.calls = 0  # requests answered in process (a test checks the path is taken)
        self._apps: dict[str, Any] = {}  # botocore service id -> moto's Flask app of that service
        self._lock = threading.Lock()

    def install(self, session: Any) -> None:
        session.events.register("before-send", self)

    def __call__(self, request: Any, event_name: str = "", **_: Any) -> Any:
        if not request.url.startswith(self.prefix):
            return None
        from botocore.awsrequest import AWSResponse

        status, headers, body = self._answer(request, event_name.split(".")[1] if "." in event_name else "")
        with self._lock:
            self.calls += 1
        if isinstance(body, str):
            body = body.encode()
        return AWSResponse(request.url, status, {k: str(v) for k, v in headers.items()}, _Body(body or b""))

    def _answer(self, request: Any, service: str) -> tuple[int, dict[str, Any], Any]:
        from botocore.exceptions import ClientError
        from moto.core.request import Request
        from moto.moto_api import recorder
        from werkzeug.exceptions import HTTPException

        try:
            normalized = Request.from_primitives(request.method, request.url, request.headers, request.body)
            app = self._app(service, normalized.environ)
            endpoint, _ = app.url_map.bind_to_environ(normalized.environ).match()
            recorder._record_request(normalized)
            result = app.view_functions[endpoint].callback(normalized, normalized.raw_url, dict(normalized.headers))
        except HTTPException as exc:  # moto's errors, and an unknown route (404), as the server answers them
            return exc.code or 500, dict(exc.get_headers()), exc.get_body()
        except ClientError as exc:  # what the server does with one (moto calling another service)
            return 400, {}, exc.response["Error"]["Message"]
        except Exception:  # the server answers an unhandled error with a 500, which botocore retries
            log.exception("the emulated %s %s failed", request.method, request.url)
            return 500, {}, INTERNAL_ERROR
        return result if len(result) == 3 else (200, {}, result)

    def _app(self, service: str, environ: dict[str, Any]) -> Any:
        """The server's choice of service, once per botocore service (it walks every moto backend's
        URL patterns and the installed modules for each request)."""
        app = self._apps.get(service)
        if app is None:
            app = self.server_app.get_application(environ)
            if service:
                self._apps[service] = app
        return app
