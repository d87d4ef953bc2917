"""Lambda packaging (infra/bundle.py), offline: each function gets only its dependency group,
that group is enough to import it, packages are built from manylinux wheels for the Lambda
architecture, and a stale package is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from infra import bundle, spec
from infra.config import Config
from infra.constructs.functions import ARCHITECTURE, RUNTIME, function_code

from .conftest import ROOT

PROVIDER = {"replicate", "pillow", "httpx"}
NEVER_SHIPPED = {"moto", "pytest", "ruff", "aws-cdk-lib", "constructs", "cdk-nag", "cfn-lint"}


def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def test_groups_of_the_functions() -> None:
    assert not names(bundle.requirements("api")) & (PROVIDER | NEVER_SHIPPED)
    assert names(bundle.requirements("worker")) >= PROVIDER
    assert not names(bundle.requirements("worker")) & NEVER_SHIPPED
    assert bundle.group_of("api") == bundle.group_of("dispatcher") == "api"
    assert bundle.group_of("worker") == "worker"
    for function in spec.FUNCTIONS:
        assert bundle.requirements(bundle.group_of(function)), function


def test_runtime_matches_the_wheels() -> None:
    assert RUNTIME.name == f"python{bundle.PYTHON_VERSION}"
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


def test_a_stale_or_missing_package_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(bundle, "BUILD", tmp_path)
    config = Config.from_context(lambda key: None)
    assert config.assets == "bundles"
    with pytest.raises(RuntimeError, match="make bundle"):
        function_code("api", config)

    package = tmp_path / "api"
    package.mkdir()
    (package / bundle.STAMP).write_text(json.dumps({"inputs": bundle.inputs_hash("api")}))
    assert bundle.is_current("api")
    function_code("api", config)  # accepted

    monkeypatch.setattr(bundle, "requirements", lambda group: ["pydantic==0.0.1"])
    assert not bundle.is_current("api")  # a changed dependency set makes it stale
    with pytest.raises(RuntimeError, match="make bundle"):
        function_code("api", config)


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
