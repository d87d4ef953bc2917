"""In-process Lambda runtime for the emulation: runs functions/<name>/app.py handlers.

moto needs Docker to run Lambda functions; instead a botocore `before-call.lambda.Invoke` hook on
boto3's default session answers every Invoke (the workflow's Lambda tasks included: moto's
Step Functions interpreter creates its clients from that session) by calling our handler in the
calling thread. Errors come back as Lambda reports them (FunctionError + errorType/errorMessage),
so the workflow's Retry and Catch match on the exception's class name as they do on AWS. An
asynchronous invoke (InvocationType=Event) answers 202 at once and runs the handler on a thread of
its own, tried twice more if it raises, after `async_retry_delays` (AWS: about 1 and 2 minutes).

As on AWS, a container runs one event at a time and keeps its module state between events: each
function has a pool of containers, each with its own copy of functions/<name>/app.py (the
Powertools resolver, the batch processor, the dispatcher's pacer), created when every warm one is
busy. What a container would hold alone but the process shares (the Powertools logger's keys and
metrics buffer, singletons of shared/) is kept per thread: an invocation runs on one thread.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
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


def _per_thread(obj: Any, *names: str) -> None:
    """Give `obj` one value of each attribute in `names` per thread, each thread's starting as a copy
    of the value `obj` has now (Powertools keeps these on process-wide singletons)."""
    if getattr(obj, "_per_thread", False):
        return
    local = threading.local()
    initial = {name: copy.deepcopy(getattr(obj, name)) for name in names}

    def attribute(name: str) -> property:
        def get(_: Any) -> Any:
            if not hasattr(local, name):
                setattr(local, name, copy.deepcopy(initial[name]))
            return getattr(local, name)

        return property(get, lambda _, value: setattr(local, name, value))

    namespace = {name: attribute(name) for name in names} | {"_per_thread": True}
    obj.__class__ = type(f"PerThread{type(obj).__name__}", (type(obj),), namespace)
    for name in names:
        obj.__dict__.pop(name, None)


def keep_powertools_state_per_thread() -> None:
    from shared.observability import logger, metrics

    _per_thread(logger.registered_formatter, "log_format")
    _per_thread(metrics.provider, "metric_set", "dimension_set", "dimension_sets", "metadata_set")


class Container:
    """One warm execution environment of a function: its own module state, one event at a time."""

    def __init__(self, name: str, first: bool) -> None:
        module_name = f"functions.{name}.app"
        if first:  # the imported module itself, so what tests inspect or patch is what the first container runs
            self.module = importlib.import_module(module_name)
        else:
            spec = importlib.util.find_spec(module_name)
            assert spec and spec.loader
            self.module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(self.module)
        self.handler: Callable[[dict, Any], Any] = self.module.handler


class LambdaRuntime:
    def __init__(self) -> None:
        self.invocations: Counter[str] = Counter()
        self.async_retry_delays: tuple[float, ...] = (60.0, 120.0)
        self.async_failures: Counter[str] = Counter()  # events dropped after every try failed
        self._lock = threading.Lock()
        self._idle: dict[str, list[Container]] = {name: [] for name in FUNCTIONS}
        self.containers: Counter[str] = Counter()
        keep_powertools_state_per_thread()

    def handler(self, name: str) -> Callable[[dict, Any], Any]:
        if name not in FUNCTIONS:
            raise KeyError(f"Unknown function {name!r}; known: {sorted(FUNCTIONS)}")
        return importlib.import_module(f"functions.{name}.app").handler

    def invoke(self, name: str, event: Any) -> Any:
        """Run a handler like Lambda would; exceptions propagate (callers decide how to report)."""
        container = self._acquire(name)
        try:
            return container.handler(event, LambdaContext(name))
        finally:
            with self._lock:
                self._idle[name].append(container)

    def warm_modules(self, name: str) -> list[Any]:
        """The module state of each idle container of `name` (tests reset what a warm container keeps)."""
        with self._lock:
            return [container.module for container in self._idle[name]]

    def _acquire(self, name: str) -> Container:
        if name not in FUNCTIONS:
            raise KeyError(f"Unknown function {name!r}; known: {sorted(FUNCTIONS)}")
        with self._lock:
            self.invocations[name] += 1
            if self._idle[name]:
                return self._idle[name].pop()
            self.containers[name] += 1
            first = self.containers[name] == 1
        return Container(name, first)

    def _invoke_async(self, name: str, event: Any) -> None:
        """Lambda's event invocation: the first try, then one per retry delay while it raises."""
        for delay in (0.0, *self.async_retry_delays):
            time.sleep(delay)
            try:
                self.invoke(name, event)
                return
            except Exception as exc:
                log.warning("%s (asynchronous) raised %s: %s", name, type(exc).__name__, exc)
        with self._lock:
            self.async_failures[name] += 1

    # ---- the botocore hook -------------------------------------------------------------------
    def install(self, session: Any) -> None:
        session.events.register("before-call.lambda.Invoke", self._on_invoke)

    def _on_invoke(self, params: dict, **_: Any) -> tuple[Any, dict]:
        from botocore.awsrequest import AWSResponse

        name = unquote(params["url_path"].split("/functions/")[1].split("/")[0]).rsplit(":", 1)[-1]
        event = json.loads(params.get("body") or b"{}")
        headers = {k.lower(): v for k, v in (params.get("headers") or {}).items()}
        if headers.get("x-amz-invocation-type") == "Event":
            if name not in FUNCTIONS:
                raise KeyError(f"Unknown function {name!r}")
            threading.Thread(target=self._invoke_async, args=(name, event), name=f"async-{name}", daemon=True).start()
            return AWSResponse(params.get("url", ""), 202, {}, None), {"StatusCode": 202, "Payload": io.BytesIO(b"")}
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
