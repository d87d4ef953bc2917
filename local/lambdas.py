"""In-process Lambda runtime for the emulation: runs functions/<name>/app.py handlers.

moto needs Docker to run Lambda functions; instead a botocore `before-call.lambda.Invoke` hook on
boto3's default session answers every Invoke (the workflow's Lambda tasks included: moto's
Step Functions interpreter creates its clients from that session) by calling our handler in the
calling thread. Errors come back as Lambda reports them (FunctionError + errorType/errorMessage),
so the workflow's Retry and Catch match on the exception's class name as they do on AWS.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from infra.spec import FUNCTIONS

log = logging.getLogger("local.lambdas")

ACCOUNT = "123456789012"
REGION = "us-east-1"


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


class LambdaContext:
    """The parts of the Lambda context object that handlers and Powertools use."""

    def __init__(self, name: str) -> None:
        spec = FUNCTIONS[name]
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn(name)
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaRuntime:
    def __init__(self) -> None:
        self.invocations: Counter[str] = Counter()
        self._lock = threading.Lock()

    def handler(self, name: str) -> Callable[[dict, Any], Any]:
        if name not in FUNCTIONS:
            raise KeyError(f"Unknown function {name!r}; known: {sorted(FUNCTIONS)}")
        return importlib.import_module(f"functions.{name}.app").handler

    def invoke(self, name: str, event: Any) -> Any:
        """Run a handler like Lambda would; exceptions propagate (callers decide how to report)."""
        with self._lock:
            self.invocations[name] += 1
        return self.handler(name)(event, LambdaContext(name))

    # ---- the botocore hook -------------------------------------------------------------------
    def install(self, session: Any) -> None:
        session.events.register("before-call.lambda.Invoke", self._on_invoke)

    def _on_invoke(self, params: dict, **_: Any) -> tuple[Any, dict]:
        from botocore.awsrequest import AWSResponse

        name = unquote(params["url_path"].split("/functions/")[1].split("/")[0]).rsplit(":", 1)[-1]
        event = json.loads(params.get("body") or b"{}")
        reply: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        try:
            result = self.invoke(name, event)
        except Exception as exc:
            log.warning("%s raised %s: %s", name, type(exc).__name__, exc)
            reply["FunctionError"] = "Unhandled"
            result = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
        reply["Payload"] = io.BytesIO(json.dumps(result, default=str).encode())
        return AWSResponse(params.get("url", ""), 200, {}, None), reply
