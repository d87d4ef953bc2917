"""Lambda packaging (infra/bundle.py), offline: each function gets only its dependency group,
that group is enough to import it, packages are built from manylinux wheels for the Lambda
architecture, compiled by the runtime's Python, with botocore's models of every service the code
calls, and the CDK app builds them itself (never for destroy)."""

from __future__ import annotations

import ast
import gzip
import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from infra import bundle, spec
from infra.config import Config
from infra.constructs.functions import ARCHITECTURE, RUNTIME, function_code

from .conftest import ROOT

PROVIDER = {"replicate", "httpx"}
NEVER_SHIPPED = {"moto", "pytest", "ruff", "aws-cdk-lib", "constructs", "cdk-nag", "cfn-lint"}


def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def test_groups_of_the_functions() -> None:
    assert not names(bundle.requirements("api")) & (PROVIDER | {"pillow"} | NEVER_SHIPPED)
    assert names(bundle.requirements("worker")) >= PROVIDER | {"pillow"}
    assert not names(bundle.requirements("worker")) & NEVER_SHIPPED
    assert bundle.group_of("api") == bundle.group_of("dispatcher") == "api"
    assert bundle.group_of("worker") == "worker"
    # The finalizer cancels predictions (the provider client) and never draws an image.
    assert names(bundle.requirements(bundle.group_of("finalizer"))) >= PROVIDER
    assert "pillow" not in names(bundle.requirements(bundle.group_of("finalizer")))
    # The notifier posts client webhooks with httpx: neither the provider client nor Pillow.
    notifier = names(bundle.requirements(bundle.group_of("notifier")))
    assert "httpx" in notifier and not notifier & {"replicate", "pillow"}
    for function in spec.FUNCTIONS:
        assert bundle.requirements(bundle.group_of(function)), function


def test_runtime_matches_the_wheels() -> None:
    assert RUNTIME.name == f"python{bundle.PYTHON_VERSION}" == f"python{spec.LAMBDA_PYTHON}"
    assert ARCHITECTURE.name == bundle.ARCHITECTURE
    assert all("aarch64" in platform for platform in bundle.PLATFORMS[bundle.ARCHITECTURE])


def test_pip_installs_wheels_for_lambda_only(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    seen = []

    def run(command, **kwargs):
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, stderr="")

    monkeypatch.setattr(bundle.subprocess, "run", run)
    bundle._pip_install(["pydantic==2.14.3"], tmp_path, "arm64")
    (command,) = seen
    assert "--only-binary=:all:" in command  # never an sdist compiled for this machine
    assert command[command.index("--python-version") + 1] == bundle.PYTHON_VERSION
    assert command[command.index("--implementation") + 1] == "cp"
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"] == list(bundle.PLATFORMS["arm64"])
    assert command[command.index("-c") + 1] == str(bundle.LOCK)  # the pinned versions
    assert command[command.index("--target") + 1] == str(tmp_path)


# ---- the CDK app builds the packages (local bundling) ------------------------------------------
def synth_one_function(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **context) -> tuple[list[str], Path]:
    """A stack with the api function's code as the real app makes it; bundle.build replaced by a
    fake package. Returns the functions built and the cloud assembly's directory."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_

    built: list[str] = []

    def fake_build(function: str, **_kwargs) -> Path:
        built.append(function)
        package = tmp_path / "build" / function
        (package / "__pycache__").mkdir(parents=True, exist_ok=True)
        (package / "app.py").write_text("def handler(event, context): ...\n")
        (package / "__pycache__" / "app.cpython-312.pyc").write_bytes(b"pyc")
        (package / bundle.STAMP).write_text("{}")
        return package

    monkeypatch.setattr(bundle, "build", fake_build)
    outdir = tmp_path / "cdk.out"
    app = App(outdir=str(outdir), context=context)
    stack = Stack(app, "Bundled")
    lambda_.Function(
        stack,
        "Api",
        runtime=RUNTIME,
        handler="app.handler",
        code=function_code("api", Config.from_context(lambda key: None)),
    )
    app.synth()
    return built, outdir


def test_synth_builds_the_package_into_the_asset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    built, outdir = synth_one_function(monkeypatch, tmp_path)
    assert built == ["api"]
    (asset,) = outdir.glob("asset.*")
    assert (asset / "app.py").is_file() and (asset / "__pycache__" / "app.cpython-312.pyc").is_file()
    assert not (asset / bundle.STAMP).exists()


def test_no_package_is_built_when_cdk_skips_bundling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The CDK CLI passes an empty bundling-stacks list for destroy, bootstrap and list.
    built, _ = synth_one_function(monkeypatch, tmp_path, **{"aws:cdk:bundling-stacks": []})
    assert built == []


def test_the_asset_changes_with_any_input_of_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    before = bundle.inputs_hash("api")
    monkeypatch.setattr(bundle, "requirements", lambda group: ["pydantic==0.0.1"])
    assert bundle.inputs_hash("api") != before


# ---- bytecode by the runtime's Python ---------------------------------------------------------
def test_a_missing_runtime_python_stops_the_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3.X, no pyenv
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.delenv(bundle.INTERPRETER_ENV, raising=False)
    monkeypatch.setattr(bundle, "BUILD", tmp_path / "build")
    with pytest.raises(bundle.BundleError, match=rf"Python {bundle.PYTHON_VERSION} .*LAMBDA_PYTHON"):
        bundle.build("api", force=True)
    assert not (tmp_path / "build" / "api").exists()  # nothing shipped without bytecode


def test_an_interpreter_of_another_version_is_not_taken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shim = tmp_path / f"python{bundle.PYTHON_VERSION}"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # a shim that runs this machine's Python
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.delenv(bundle.INTERPRETER_ENV, raising=False)
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != bundle.PYTHON_VERSION:
        with pytest.raises(bundle.BundleError):
            bundle.find_interpreter()


def test_bytecode_is_compiled_by_the_runtime_python_without_source_checks(tmp_path: Path) -> None:
    try:
        interpreter = bundle.find_interpreter()
    except bundle.BundleError as error:
        pytest.skip(str(error))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "module.py").write_text("VALUE = 1\n")
    bundle.compile_bytecode(tmp_path, interpreter)
    tag = "cpython-" + bundle.PYTHON_VERSION.replace(".", "")
    compiled = tmp_path / "pkg" / "__pycache__" / f"module.{tag}.pyc"
    flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
    assert flags == 0b01  # hash-based, unchecked: valid whatever mtime the zip gives the source


# ---- botocore keeps the model of every service the code calls -----------------------------------
CLIENT_CALL = re.compile(r"""\bclient\(\s*["']([a-z0-9-]+)["']""")


def services_called() -> set[str]:
    found = set()
    for base in ("shared", "functions"):
        for path in (ROOT / base).rglob("*.py"):
            found |= set(CLIENT_CALL.findall(path.read_text()))
    if (ROOT / "shared" / "secrets.py").read_text().count("parameters.get_secret"):
        found.add("secretsmanager")  # Powertools Parameters' own client
    return found


def test_every_service_the_code_calls_keeps_its_model() -> None:
    called = services_called()
    assert {"dynamodb", "s3", "sqs", "stepfunctions"} <= called  # the scan is not vacuous
    assert called <= bundle.BOTOCORE_SERVICES, f"pruned from the packages: {sorted(called - bundle.BOTOCORE_SERVICES)}"


def test_every_client_names_its_service_literally() -> None:
    """So the scan above cannot miss one: client(service) with a variable would hide it."""
    for base in ("shared", "functions"):
        for path in (ROOT / base).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "client":
                    literal = node.args and isinstance(node.args[0], ast.Constant)
                    assert literal or path.name == "aws.py", f"{path.relative_to(ROOT)}:{node.lineno}"


def test_pruning_keeps_the_kept_services_and_the_shared_data(tmp_path: Path) -> None:
    data = tmp_path / "botocore" / "data"
    prefixes = {"stepfunctions": "states"}
    for service in (*bundle.BOTOCORE_SERVICES, "ec2", "iam"):
        (data / service / "2012-01-01").mkdir(parents=True)
        metadata = {"metadata": {"endpointPrefix": prefixes.get(service, service)}}
        (data / service / "2012-01-01" / "service-2.json.gz").write_bytes(gzip.compress(json.dumps(metadata).encode()))
    for name in ("partitions.json", "sdk-default-configuration.json", "_retry.json"):
        (data / name).write_text("{}")
    services = {"states": {"endpoints": {}}, "dynamodb": {}, "ec2": {}, "iam": {}}
    partition = {"partition": "aws", "defaults": {"hostname": "{service}.{region}.{dnsSuffix}"}, "services": services}
    (data / "endpoints.json").write_text(json.dumps({"partitions": [partition], "version": 3}))

    bundle.prune_botocore(tmp_path)

    kept = {path.name for path in data.iterdir()}
    assert kept == set(bundle.BOTOCORE_SERVICES) | {
        "endpoints.json",
        "partitions.json",
        "sdk-default-configuration.json",
        "_retry.json",
    }
    # endpoints.json (1.2 MB, parsed at every cold start's first client) keeps the kept services only.
    endpoints = json.loads((data / "endpoints.json").read_text())
    assert endpoints["version"] == 3 and endpoints["partitions"][0]["defaults"] == partition["defaults"]
    assert set(endpoints["partitions"][0]["services"]) == {"states", "dynamodb"}


def test_a_module_without_bytecode_stops_the_build(tmp_path: Path) -> None:
    try:
        interpreter = bundle.find_interpreter()
    except bundle.BundleError as error:
        pytest.skip(str(error))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "compiled.py").write_text("VALUE = 1\n")
    bundle.compile_bytecode(tmp_path, interpreter)
    bundle.check_bytecode(tmp_path)
    (tmp_path / "pkg" / "added_later.py").write_text("VALUE = 2\n")
    with pytest.raises(bundle.BundleError, match=r"added_later\.py"):
        bundle.check_bytecode(tmp_path)


def test_package_files_are_the_function_and_shared_without_bytecode() -> None:
    files = dict(bundle._source_files("api"))
    assert "app.py" in files and files["app.py"] == spec.FUNCTIONS["api"].source_dir / "app.py"
    assert "shared/__init__.py" in files
    assert not [name for name in files if name.startswith(("functions/", "local/", "tests/", "infra/"))]
    assert not [name for name in files if name.endswith(".pyc") or "__pycache__" in name]


# ---- each function imports with its own group only -------------------------------------------
def closure(requirements: list[str]) -> set[str]:
    """Installed distributions needed by `requirements`, transitively (extras and markers honoured)."""
    needed: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        key = (name, tuple(sorted(requirement.extras)))
        if key in needed:
            continue
        needed.add(key)
        for child in metadata.distribution(name).requires or []:
            child_requirement = Requirement(child)
            environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if child_requirement.marker is None or any(child_requirement.marker.evaluate(e) for e in environments):
                pending.append(child_requirement)
    return {name for name, _ in needed}


def blocked_modules(allowed: set[str]) -> set[str]:
    blocked = set()
    for module, distributions in metadata.packages_distributions().items():
        if not {d.lower().replace("_", "-") for d in distributions} & allowed:
            blocked.add(module)
    return blocked - {"shared", "functions", "infra", "local", "tests"}


ISOLATED_IMPORT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    blocked = set(json.loads(sys.argv[2]))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                raise ImportError(f"{name} is not in this function's dependency group")
            return None

    sys.meta_path.insert(0, Blocker())
    sys.path.insert(0, sys.argv[1])          # the package root: app.py next to shared/
    import app                                # the handler module, as Lambda imports it
    import shared
    for module in pkgutil.walk_packages(shared.__path__, "shared."):
        importlib.import_module(module.name)
    """
)


@pytest.mark.parametrize("function", list(spec.FUNCTIONS))
def test_function_imports_with_its_dependency_group_only(function: str) -> None:
    allowed = closure(bundle.requirements(bundle.group_of(function)))
    blocked = blocked_modules(allowed)
    assert "moto" in blocked and "aws_cdk" in blocked  # the blocker is not vacuous
    if bundle.group_of(function) == "api":
        assert "PIL" in blocked and "replicate" in blocked
    package_root = str(spec.FUNCTIONS[function].source_dir)
    environment = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", ISOLATED_IMPORT, package_root, json.dumps(sorted(blocked))],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
