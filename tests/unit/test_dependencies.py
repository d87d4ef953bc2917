"""Every third-party module the code imports is a declared dependency: the Lambda code's in the
`worker` group (which includes `api`), everything else's (emulation, tests, infra, benchmarks) in
`dev`. An undeclared import works only while something else happens to pull the package in."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"functions", "shared", "infra", "local", "tests", "bench", "ops", "mediagen"}
# Directories with their own pyproject (the client package) are checked by their own tests.
SKIPPED_DIRS = {".venv", "node_modules", "build", "cdk.out", "client", ".git"}


def declared(group: str) -> set[str]:
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]

    def resolve(name: str) -> set[str]:
        found: set[str] = set()
        for entry in groups[name]:
            found |= resolve(entry["include-group"]) if isinstance(entry, dict) else {Requirement(entry).name}
        return found

    return {metadata.distribution(name).metadata["Name"].lower() for name in resolve(group)}


def imported_modules(directories: list[str]) -> dict[str, set[str]]:
    """Top-level module name -> the files importing it."""
    found: dict[str, set[str]] = {}
    for directory in directories:
        for path in (ROOT / directory).rglob("*.py"):
            if SKIPPED_DIRS & set(path.relative_to(ROOT).parts):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def undeclared(directories: list[str], group: str) -> dict[str, set[str]]:
    allowed = declared(group)
    providers = metadata.packages_distributions()
    missing = {}
    for module, files in imported_modules(directories).items():
        if module in sys.stdlib_module_names or module in FIRST_PARTY or module == "__future__":
            continue
        distributions = {d.lower() for d in providers.get(module, [])}
        if not distributions & allowed:
            missing[f"{module} ({', '.join(sorted(distributions)) or 'not installed'})"] = files
    return missing


@pytest.mark.parametrize(
    ("directories", "group"),
    [(["functions", "shared"], "worker"), (["local", "tests", "infra", "bench", "ops"], "dev")],
)
def test_every_import_is_declared(directories: list[str], group: str) -> None:
    directories = [d for d in directories if (ROOT / d).is_dir()]
    assert undeclared(directories, group) == {}
