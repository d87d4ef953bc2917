"""What keeps cold starts short, checked as facts rather than timings (`make bench` measures them):
no function imports an AWS SDK, the X-Ray SDK or a web framework before its first event; tracing
still patches what the code calls, once it is imported; the benchmark's FastAPI twin of the api
has the api's routes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from infra import spec
from tests.conftest import ROOT

# Tracing on, as deployed (Powertools turns it off outside Lambda and when told to).
LAMBDA_ENV = {
    "PATH": "/usr/bin:/bin",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_LAMBDA_FUNCTION_NAME": "api",
    "LAMBDA_TASK_ROOT": str(ROOT),
    "POWERTOOLS_TRACE_DISABLED": "false",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    **spec.RUNTIME_ENV,
}
NOT_AT_INIT = (
    "boto3",
    "botocore.client",
    "aws_xray_sdk",
    "aws_lambda_powertools.event_handler",  # the resolver and its OpenAPI models
    "pydantic_settings",
    "fastapi",
    "PIL",
    "importlib.metadata",  # pydantic's plugin discovery: plugins are off (shared/__init__.py)
)


def run_python(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=LAMBDA_ENV | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("function", list(spec.FUNCTIONS))
def test_a_cold_start_imports_no_sdk_before_the_first_event(function: str) -> None:
    loaded = run_python(
        f"""
        import json, sys
        import functions.{function}.app
        print(json.dumps(sorted(m for m in {list(NOT_AT_INIT)!r} if m in sys.modules)))
        """
    )
    assert loaded == []


def test_tracing_patches_what_is_imported_once_the_first_event_arrives() -> None:
    patched = run_python(
        """
        import json, sys
        from shared.observability import tracer

        @tracer.capture_lambda_handler
        def handler(event, context):
            from shared.aws import client
            client("dynamodb")
            return sorted(__import__("aws_xray_sdk.core.patcher").core.patcher._PATCHED_MODULES)

        before = "aws_xray_sdk" in sys.modules
        during = handler({}, None)
        import httpx
        after = sorted(__import__("aws_xray_sdk.core.patcher").core.patcher._PATCHED_MODULES)
        from botocore.client import BaseClient
        wrapped = hasattr(BaseClient._make_api_call, "__wrapped__")
        print(json.dumps({"before": before, "during": during, "after": after, "wrapped": wrapped}))
        """
    )
    assert patched == {
        "before": False,  # nothing of the X-Ray SDK until an event is traced
        "during": ["botocore", "httplib"],  # once botocore's session was imported: AWS calls and urllib
        "after": ["botocore", "httplib", "httpx"],  # httpx when it is imported
        "wrapped": True,
    }


def test_an_unsampled_invocation_loads_nothing_of_the_x_ray_sdk_until_a_sampled_one() -> None:
    """X-Ray records nothing of an unsampled invocation (99% at the deployed rate): it runs the
    handler alone; the first sampled one makes the tracer, which patches what is already imported."""
    code = """
        import json, os, sys
        from shared.observability import tracer

        @tracer.capture_lambda_handler
        def handler(event, context):
            from shared.aws import client
            client("dynamodb")
            return "aws_xray_sdk" in sys.modules

        os.environ["_X_AMZN_TRACE_ID"] = os.environ["_X_AMZN_TRACE_ID"].replace("Sampled=1", "Sampled=0")
        unsampled = [handler({}, None), handler({}, None)]
        os.environ["_X_AMZN_TRACE_ID"] = os.environ["_X_AMZN_TRACE_ID"].replace("Sampled=0", "Sampled=1")
        sampled = handler({}, None)
        patched = sorted(__import__("aws_xray_sdk.core.patcher").core.patcher._PATCHED_MODULES)
        print(json.dumps({"unsampled": unsampled, "sampled": sampled, "patched": patched}))
        """
    assert run_python(code) == {"unsampled": [False, False], "sampled": True, "patched": ["botocore", "httplib"]}


def test_pydantic_asks_the_stand_in_plugin_loader_and_finds_no_plugins() -> None:
    """shared/__init__.py stands in for pydantic's plugin loader when plugins are off: pydantic must
    still get its plugins from that loader (else the stand-in saves nothing, or a newer pydantic
    wants more of the loader than get_plugins), and with plugins on, the real loader is used."""
    asked = run_python(
        """
        import json, sys
        import shared
        loader = sys.modules["pydantic.plugin._loader"]
        calls = []
        loader.get_plugins = lambda: calls.append(1) or ()
        from shared.models import GenerateRequest
        GenerateRequest.model_validate({"prompt": "a lighthouse"})
        print(json.dumps({"calls": len(calls), "metadata": "importlib.metadata" in sys.modules}))
        """
    )
    assert asked["calls"] > 0 and not asked["metadata"], asked
    env = LAMBDA_ENV.copy()
    env.pop("PYDANTIC_DISABLE_PLUGINS")
    real = "import sys, shared.models; print(hasattr(sys.modules['pydantic.plugin._loader'], 'entry_points'))"
    result = subprocess.run(
        [sys.executable, "-c", real], cwd=ROOT, env=env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert result.stdout.strip() == "True", result.stderr[-3000:]


def test_a_job_is_stored_and_read_without_boto3() -> None:
    """The clients come from botocore's session and the items are (de)serialized without boto3:
    importing it would also load s3transfer and its resource layer at every cold start."""
    loaded = run_python(
        """
        import json, sys
        from decimal import Decimal
        from shared.aws import client
        from shared.job_store import JobStore

        client("dynamodb")
        store = JobStore()
        item = {"job_id": "j", "n": 7, "x": 1.5, "ok": True, "none": None, "m": {"l": [1, "a"]}}
        assert store._unmarshal(store._marshal(item)) == {k: v for k, v in item.items() if v is not None}
        try:
            store._marshal({"tiny": Decimal("1e-200")})
        except Exception as exc:
            refused = type(exc).__name__
        print(json.dumps({"loaded": [m for m in ("boto3", "s3transfer") if m in sys.modules], "refused": refused}))
        """
    )
    assert loaded == {"loaded": [], "refused": "Underflow"}


def test_the_fastapi_twin_of_the_api_has_its_routes() -> None:
    """bench/cold_start.py compares the api with it: same methods, paths and operation ids."""
    from bench.fastapi_baseline.app import app as baseline
    from functions.api.app import api

    ours = {(r.method, r.path, r.operation_id) for r in api.routes if r.documented}
    theirs = {
        (method, route.path, route.operation_id)
        for route in baseline.routes
        if getattr(route, "include_in_schema", False)
        for method in route.methods
    }
    assert ours == theirs


def test_make_bench_measures_every_function() -> None:
    from bench.cold_start import CASES

    assert {case.package for case in CASES} >= set(spec.FUNCTIONS)
