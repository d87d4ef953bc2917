"""Logger, metrics and tracer: one instance each, shared by every module of a function.

Each handler decorates itself with `logger.inject_lambda_context`, `metrics.log_metrics` and
`tracer.capture_lambda_handler`; shared code only appends keys, adds metrics and opens subsegments.

Tracing costs nothing at init: Powertools' Tracer (and the X-Ray SDK under it) is made at the first
sampled invocation, and each library whose calls are traced is patched when it is first imported,
so a cold start pays only for what its code path uses. (Patching every library at init imported
botocore's client and its docs modules before any handler ran: about 110 ms of the api's init.)
An invocation that X-Ray does not sample (99% of them at the deployed rate) records nothing
whatever the SDK does, so until a sampled one arrives the container never loads the SDK at all.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "media-generation"
NAMESPACE = "MediaGeneration"
# What is patched for tracing (X-Ray SDK names), once the module that needs it has been imported.
# botocore.session: AWS calls (every client here is made from botocore's session, whose import
# loads botocore's client, endpoint and urllib3 completely; boto3 imports it too) and urllib's
# (http.client: the provider's webhook secret). httpx: the provider client, output downloads,
# client webhook deliveries. (A hook on a module that botocore.session's own import pulls in, such
# as botocore.client, would run before its importers are complete: the patch fails half-imported.)
PATCHED_AFTER_IMPORT = {"botocore.session": ["botocore", "httplib"], "httpx": ["httpx"]}


class LazyTracer:
    """Powertools' Tracer, made at the first traced invocation rather than at import."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()

    @property
    def tracer(self) -> Tracer:
        with self._lock:
            if self._tracer is None:
                self._tracer = Tracer(service=self.service, auto_patch=False)
                if not self._tracer.disabled:
                    self._patch_on_import(self._tracer)
            return self._tracer

    @staticmethod
    def _patch_on_import(tracer: Tracer) -> None:
        import wrapt  # the X-Ray SDK's own dependency; runs the hook at once if already imported

        for module, libraries in PATCHED_AFTER_IMPORT.items():
            wrapt.register_post_import_hook(lambda _module, libraries=libraries: tracer.patch(libraries), module)

    def capture_lambda_handler(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """Powertools' `capture_lambda_handler`: the handler's subsegment, its cold start annotation."""
        traced: Callable[[Any, Any], Any] | None = None

        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            nonlocal traced
            if traced is None and not _sampled():
                return handler(event, context)
            traced = traced or self.tracer.capture_lambda_handler(handler)
            return traced(event, context)

        return wrapper


def _sampled() -> bool:
    """Whether X-Ray samples this invocation: Lambda sets its trace header in the environment for
    each one (`Sampled=1` or `Sampled=0`)."""
    return "Sampled=1" in os.environ.get("_X_AMZN_TRACE_ID", "")


logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = LazyTracer(service=SERVICE)

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
