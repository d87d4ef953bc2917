"""Build one Lambda deployment package per function, without Docker: `build/<function>/`.

Each package holds the function's own directory (functions/<name>/, its `app.py` at the root), the
`shared/` package, and only the dependency group of pyproject.toml the function needs, installed
by pip from manylinux wheels for the Lambda architecture and Python version (never from sdists, so
nothing is compiled for this machine), at the versions of requirements.lock.

A package is rebuilt only when its inputs change (sources, groups, lock, target platform): their
hash is kept in the package, and the CDK app refuses a package whose hash is stale.

    python -m infra.bundle                 # every function of infra/spec.py
    python -m infra.bundle worker --force  # one function, rebuilt even if current
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from infra import spec

ROOT = spec.ROOT
BUILD = ROOT / "build"
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
SHARED = ROOT / "shared"
STAMP = ".bundle.json"

# Graviton: about 20% cheaper per GB-second than x86_64, and every dependency has aarch64 wheels.
ARCHITECTURE = "arm64"
PYTHON_VERSION = "3.12"
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels run on it, and
# some packages (Pillow 13) publish nothing older for aarch64.
PLATFORMS = {
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
}

# boto3 is shipped, pinned, although the runtime has one: the runtime's version changes without a
# deploy, and the code is tested against the pinned one (AWS's advice for production functions).
EXCLUDED: frozenset[str] = frozenset()

IGNORED_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}


def group_of(function: str) -> str:
    """The pyproject dependency group a function installs (infra/spec.py says which)."""
    return spec.FUNCTIONS[function].dependency_group


def requirements(group: str) -> list[str]:
    """The requirement strings of a pyproject dependency group, `include-group`s resolved."""
    groups = tomllib.loads(PYPROJECT.read_text())["dependency-groups"]

    def resolve(name: str, seen: tuple[str, ...]) -> list[str]:
        if name in seen:
            raise ValueError(f"dependency group cycle: {' -> '.join((*seen, name))}")
        found: list[str] = []
        for entry in groups[name]:
            if isinstance(entry, dict):
                found += resolve(entry["include-group"], (*seen, name))
            else:
                found.append(entry)
        return found

    result = []
    for requirement in resolve(group, ()):
        if _project_name(requirement) not in EXCLUDED and requirement not in result:
            result.append(requirement)
    return result


def _project_name(requirement: str) -> str:
    name = requirement
    for separator in "[=<>!~ ;":
        name = name.split(separator, 1)[0]
    return name.strip().lower().replace("_", "-")


def _source_files(function: str) -> list[tuple[str, Path]]:
    """(path inside the package, file) for the function's code and the shared package."""
    spec_ = spec.FUNCTIONS[function]
    files = []
    for base, prefix in ((spec_.source_dir, ""), (SHARED, "shared/")):
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(base)
            if path.is_file() and not _ignored(relative):
                files.append((prefix + relative.as_posix(), path))
    return files


def _ignored(relative: Path) -> bool:
    return any(part in IGNORED_NAMES for part in relative.parts) or relative.suffix in IGNORED_SUFFIXES


def inputs_hash(function: str, architecture: str = ARCHITECTURE) -> str:
    """Hash of everything that goes into a function's package."""
    digest = hashlib.sha256()
    recipe = {
        "requirements": requirements(group_of(function)),
        "lock": LOCK.read_text(),
        "platforms": PLATFORMS[architecture],
        "python": PYTHON_VERSION,
        "recipe": 1,  # bump when the way packages are built changes
    }
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for name, path in _source_files(function):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def bundle_dir(function: str) -> Path:
    return BUILD / function


def is_current(function: str, architecture: str = ARCHITECTURE) -> bool:
    stamp = bundle_dir(function) / STAMP
    if not stamp.is_file():
        return False
    return json.loads(stamp.read_text()).get("inputs") == inputs_hash(function, architecture)


def build(function: str, *, architecture: str = ARCHITECTURE, force: bool = False) -> Path:
    target = bundle_dir(function)
    inputs = inputs_hash(function, architecture)  # before copying: a later edit makes it stale
    if not force and is_current(function, architecture):
        print(f"{function}: up to date ({target.relative_to(ROOT)})")
        return target
    BUILD.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{function}-", dir=BUILD))
    try:
        _pip_install(requirements(group_of(function)), staging, architecture)
        shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts: useless on Lambda
        for name, path in _source_files(function):
            destination = staging / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
        _remove_bytecode(staging)
        stamp = {"function": function, "group": group_of(function), "inputs": inputs}
        (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{function}: built {target.relative_to(ROOT)} ({_megabytes(_tree_size(target))} unzipped)")
    return target


def _pip_install(requirements_: list[str], target: Path, architecture: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for platform in PLATFORMS[architecture]:
        command += ["--platform", platform]
    command += [
        "--only-binary=:all:",
        "--python-version", PYTHON_VERSION,
        "--implementation", "cp",
        "--no-compile",  # bytecode of this machine's Python would be dead weight on 3.12
        "--target", str(target),
        "-c", str(LOCK),
        *requirements_,
    ]  # fmt: skip
    result = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    # Some machines' pip config lists local indexes that do not exist: pip warns for every package.
    noise = "is neither a file nor a directory"
    sys.stderr.write("".join(line for line in result.stderr.splitlines(keepends=True) if noise not in line))
    result.check_returncode()


def _remove_bytecode(root: Path) -> None:
    for cache in list(root.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    for compiled in root.rglob("*.py[co]"):
        compiled.unlink()


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def zipped_size(root: Path) -> int:
    """Size of the package as CDK uploads it (a deflated zip of the directory)."""
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(root).as_posix())
        return handle.tell()


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def report(functions: list[str]) -> str:
    """A Markdown table of the packages' sizes (the README records it)."""
    lines = ["| function | dependency group | unzipped | zipped |", "|---|---|---|---|"]
    for function in functions:
        root = bundle_dir(function)
        lines.append(
            f"| {function} | {group_of(function)} | {_megabytes(_tree_size(root))} | {_megabytes(zipped_size(root))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("functions", nargs="*", help="default: every function of infra/spec.py")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--report", action="store_true", help="print the packages' sizes as a table")
    args = parser.parse_args(argv)
    functions = args.functions or list(spec.FUNCTIONS)
    unknown = set(functions) - set(spec.FUNCTIONS)
    if unknown:
        parser.error(f"unknown functions {sorted(unknown)}; infra/spec.py has {sorted(spec.FUNCTIONS)}")
    for function in functions:
        build(function, force=args.force)
    if args.report:
        print(report(functions))


if __name__ == "__main__":
    main()
