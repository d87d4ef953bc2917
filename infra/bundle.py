"""Build one Lambda deployment package per function, without Docker: `build/<function>/`.

Each package holds the function's own directory (functions/<name>/, its `app.py` at the root), the
`shared/` package, and only the dependency group of pyproject.toml the function needs, installed
by pip from manylinux wheels for the Lambda architecture and Python version (never from sdists, so
nothing is compiled for this machine), at the versions of requirements.lock. botocore's service
models (and endpoints.json) are pruned to the services the code calls, and everything is compiled
to bytecode by the Lambda runtime's own Python version, checked module by module (Lambda's code
directory is read-only: without .pyc files every cold start compiles every module).

The CDK app runs this itself when it stages a function's asset (infra/constructs/functions.py), so
`cdk synth`/`cdk deploy` need no separate step. A package is rebuilt only when its inputs change
(sources, groups, lock, target platform): their hash is kept in the package.

    python -m infra.bundle                 # every function of infra/spec.py
    python -m infra.bundle worker --force  # one function, rebuilt even if current
    python -m infra.bundle --report        # and print the packages' sizes
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
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
PYTHON_VERSION = spec.LAMBDA_PYTHON
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels run on it, and
# some packages (Pillow 13) publish nothing older for aarch64.
PLATFORMS = {
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
}

# boto3 is shipped, pinned, although the runtime has one: the runtime's version changes without a
# deploy, and the code is tested against the pinned one (AWS's advice for production functions).
EXCLUDED: frozenset[str] = frozenset()

# botocore's models of the services the code calls (tests/infra/test_bundle.py checks every
# client("...") of shared/ and functions/ is here): dynamodb, s3, sqs, stepfunctions, secretsmanager
# (Powertools Parameters), xray (the X-Ray SDK's sampling-rule client). The other ~440 services'
# models are most of botocore's size. No STS: Lambda gives the role's credentials in the environment.
BOTOCORE_SERVICES = frozenset({"dynamodb", "lambda", "s3", "sqs", "stepfunctions", "secretsmanager", "xray"})

IGNORED_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}
# Overrides where the bundler looks for the runtime's Python (any interpreter of that minor version).
INTERPRETER_ENV = "LAMBDA_PYTHON_INTERPRETER"


class BundleError(RuntimeError):
    """A package cannot be built as Lambda needs it (the message says what to do)."""


# Built like the functions but never deployed: the cold-start benchmark's FastAPI + Mangum twin of
# the api (bench/cold_start.py), so both are measured from packages made the same way.
BENCH_PACKAGES = {"fastapi_baseline": (ROOT / "bench" / "fastapi_baseline", "bench")}


def group_of(function: str) -> str:
    """The pyproject dependency group a function installs (infra/spec.py says which)."""
    if function in BENCH_PACKAGES:
        return BENCH_PACKAGES[function][1]
    return spec.FUNCTIONS[function].dependency_group


def source_dir(function: str) -> Path:
    """The directory whose files go to the package's root (app.py among them)."""
    if function in BENCH_PACKAGES:
        return BENCH_PACKAGES[function][0]
    return spec.FUNCTIONS[function].source_dir


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
    files = []
    for base, prefix in ((source_dir(function), ""), (SHARED, "shared/")):
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
        "botocore_services": sorted(BOTOCORE_SERVICES),
        "recipe": 3,  # bump when the way packages are built changes
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
        _progress(f"{function}: up to date ({_shown(target)})")
        return target
    interpreter = find_interpreter()  # before the slow part: fail at once when it is missing
    BUILD.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{function}-", dir=BUILD))
    try:
        _pip_install(requirements(group_of(function)), staging, architecture)
        shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts: useless on Lambda
        prune_botocore(staging)
        for name, path in _source_files(function):
            destination = staging / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
        _remove_bytecode(staging)
        compile_bytecode(staging, interpreter)
        check_bytecode(staging)
        stamp = {"function": function, "group": group_of(function), "inputs": inputs}
        (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _progress(f"{function}: built {_shown(target)} ({_megabytes(_tree_size(target))} unzipped)")
    return target


def build_into(function: str, output_dir: str | Path) -> None:
    """The function's package, built (or reused) in build/ and copied into `output_dir`: what the
    CDK's local bundling calls, so `cdk synth`/`deploy` build the packages themselves."""
    source = build(function)
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and relative.as_posix() != STAMP:
            destination = Path(output_dir) / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def find_interpreter(version: str = PYTHON_VERSION) -> str:
    """A Python of the Lambda runtime's minor version, to compile the bytecode with: $LAMBDA_PYTHON_INTERPRETER,
    python3.X on PATH, `pyenv which python3.X`, or ~/.pyenv/versions/3.X.*. Each candidate is run,
    since a pyenv shim exists even when its version is not selected."""
    name = f"python{version}"
    candidates = [os.environ.get(INTERPRETER_ENV, ""), shutil.which(name) or ""]
    pyenv = shutil.which("pyenv")
    if pyenv:
        found = subprocess.run([pyenv, "which", name], capture_output=True, text=True)
        candidates.append(found.stdout.strip() if found.returncode == 0 else "")
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = sorted(pyenv_root.glob(f"versions/{version}.*/bin/{name}"), key=_patch_level, reverse=True)
    candidates += [str(path) for path in installed]
    for candidate in filter(None, candidates):
        if _python_version(candidate) == version:
            return candidate
    raise BundleError(
        f"Python {version} (the Lambda runtime, infra/spec.py LAMBDA_PYTHON) is needed to compile the "
        f"packages' bytecode, and none was found (looked at ${INTERPRETER_ENV}, {name} on PATH, "
        f"`pyenv which {name}`, {pyenv_root}/versions/{version}.*). Install it (e.g. `pyenv install "
        f"{version}`) or set {INTERPRETER_ENV}=/path/to/{name}."
    )


def _patch_level(path: Path) -> tuple[int, ...]:
    release = path.parents[1].name.split(".")
    return tuple(int(part) if part.isdigit() else -1 for part in release)


def _python_version(interpreter: str) -> str | None:
    try:
        result = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def compile_bytecode(root: Path, interpreter: str) -> None:
    """Every module's .pyc, by the runtime's Python. unchecked-hash: the .pyc is used without looking
    at the source, whose mtime CDK's zip does not keep (a timestamp .pyc would be stale on Lambda,
    and recompiled at every cold start since /var/task is read-only)."""
    command = [interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(root)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BundleError(f"compileall failed in {root}:\n{(result.stdout + result.stderr)[-3000:]}")


def check_bytecode(root: Path) -> None:
    """Every module has its .pyc for the runtime's Python, or the build stops (a module without one
    would be compiled at every cold start, in memory, since Lambda's code directory is read-only)."""
    tag = "cpython-" + PYTHON_VERSION.replace(".", "")
    missing = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if not (path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc").is_file()
    ]
    if missing:
        raise BundleError(f"{len(missing)} modules have no {tag} bytecode in {root}, e.g. {missing[:5]}")


def prune_botocore(root: Path) -> None:
    """Drop the service models of every service but BOTOCORE_SERVICES, and their entries in
    endpoints.json (1.2 MB, parsed whole at the first client of every cold start). The other data
    files at the top of botocore/data (partitions, default configuration, retries) stay."""
    data = root / "botocore" / "data"
    if not data.is_dir():
        return
    for service in data.iterdir():
        if service.is_dir() and service.name not in BOTOCORE_SERVICES:
            shutil.rmtree(service)
    missing = {s for s in BOTOCORE_SERVICES if not (data / s).is_dir()}
    if missing:
        raise BundleError(f"botocore has no model for {sorted(missing)}: check BOTOCORE_SERVICES")
    endpoints_file = data / "endpoints.json"
    if endpoints_file.is_file():
        prefixes = {_endpoint_prefix(data / service) for service in BOTOCORE_SERVICES}
        endpoints = json.loads(endpoints_file.read_text())
        for partition in endpoints["partitions"]:
            partition["services"] = {k: v for k, v in partition["services"].items() if k in prefixes}
        endpoints_file.write_text(json.dumps(endpoints, separators=(",", ":")))


def _endpoint_prefix(service_dir: Path) -> str:
    """The name a service has in endpoints.json (stepfunctions: states), from its newest model."""
    newest = max(path for path in service_dir.iterdir() if path.is_dir())
    model = newest / "service-2.json"
    raw = model.read_bytes() if model.is_file() else gzip.decompress((newest / "service-2.json.gz").read_bytes())
    return json.loads(raw)["metadata"]["endpointPrefix"]


def _progress(message: str) -> None:
    # stderr: the CDK CLI reads the app's stdout during synth.
    print(message, file=sys.stderr, flush=True)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _pip_install(requirements_: list[str], target: Path, architecture: str, *, dependencies: bool = True) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not dependencies:
        command.append("--no-deps")
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
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != STAMP)


def zipped_size(root: Path) -> int:
    """Size of the package as CDK uploads it (a deflated zip of the directory)."""
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.name != STAMP:
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
    parser.add_argument("functions", nargs="*", help="default: every function of infra/spec.py (or fastapi_baseline)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--report", action="store_true", help="print the packages' sizes as a table")
    args = parser.parse_args(argv)
    functions = args.functions or list(spec.FUNCTIONS)
    unknown = set(functions) - set(spec.FUNCTIONS) - set(BENCH_PACKAGES)
    if unknown:
        parser.error(f"unknown functions {sorted(unknown)}; infra/spec.py has {sorted(spec.FUNCTIONS)}")
    try:
        for function in functions:
            build(function, force=args.force)
    except BundleError as error:
        sys.exit(f"infra.bundle: {error}")
    if args.report:
        print(report(functions))


if __name__ == "__main__":
    main()
