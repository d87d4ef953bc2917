"""`make bench`: the cold start of every function, measured from its built package, beside a
FastAPI + Mangum twin of the api (bench/fastapi_baseline/).

Each function's package is the one infra/bundle.py builds for Lambda (arm64 wheels, bytecode by the
runtime's Python, botocore pruned); the baseline is built by the same steps. Those packages cannot
run here, so each gets a host twin: the same files, with only the compiled packages (pydantic_core,
wrapt, Pillow) swapped for this machine's wheels of the same versions, and compiled the same way.

Every run starts one fresh interpreter of the runtime's Python per case, the cases in a rotated
order from run to run, against the emulation in this process. As on Lambda, the package directory
is read-only (a read-only bind mount in a private mount namespace where the machine allows it,
else no write permission) and PYTHONDONTWRITEBYTECODE=1; tracing and metrics are on, as deployed,
and the request is not sampled for tracing (99% are not, at the deployed 1%).

Prints the medians of init (importing the handler module: its imports and module-level code), of
the first call, and of both, per case; then the api against the baseline (the median of each run's paired ratio).
Not measured here: Lambda's own start (its microVM, runtime and the unpacking of the package), the
network to AWS (the emulation is on loopback), and the CPU share a memory setting gives.

    make bench                                   # or: .venv/bin/python -m bench.cold_start --runs 15
    .venv/bin/python -m bench.cold_start --runs 5 --only api
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from infra import bundle, spec

ROOT = Path(__file__).resolve().parent.parent
TWINS = bundle.BUILD / "bench"
CHILD = ROOT / "bench" / "cold_start_child.py"
RESULTS = TWINS / "cold-start.json"
BASELINE = "fastapi_baseline"
CACHE_TAG = "cpython-" + bundle.PYTHON_VERSION.replace(".", "")  # the .pyc files of the runtime's Python


@dataclass(frozen=True)
class Case:
    name: str
    package: str  # a function of infra/spec.py, or the baseline
    event: str
    status: int | None = None  # the HTTP status the answer must have


CASES = (
    Case("api: health", "api", "events/api/health.json", 200),
    Case("baseline: health", BASELINE, "events/api/health.json", 200),
    Case("api: get job", "api", "events/api/get-job.json", 200),
    Case("baseline: get job", BASELINE, "events/api/get-job.json", 200),
    Case("dispatcher", "dispatcher", "events/dispatcher/sqs-batch.json"),
    Case("worker (mock)", "worker", "events/worker/generate.json"),
    Case("finalizer", "finalizer", "events/finalizer/workflow-catch.json"),
    Case("notifier", "notifier", "events/notifier/sqs-event.json"),
    Case("authorizer", "authorizer", "events/authorizer/request-unknown-key.json"),
    # A genuine delivery's path: signature checked (signed afresh below), the job read.
    Case("webhook", "webhook", "events/webhook/replicate.json", 200),
    Case("counters", "counters", "events/counters/stream-batch.json"),
)
# The provider's webhook secret the benchmark signs its delivery with (as deployed, stored: no fetch).
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"cold-start-bench-secret!").decode()
COMPARED = (("api: health", "baseline: health"), ("api: get job", "baseline: get job"))


# ---- host twins of the packages ------------------------------------------------------------------
def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[machine]


def host_twin(package: str, interpreter: str) -> tuple[Path, list[str]]:
    """The package's twin for this machine in build/bench/<package>/ (rebuilt when the package
    changed), and the distributions swapped for this machine's wheels."""
    source = bundle.build(package)
    architecture = host_architecture()
    recipe = {"inputs": json.loads((source / bundle.STAMP).read_text())["inputs"], "architecture": architecture}
    twin = TWINS / package
    stamp = twin / bundle.STAMP
    if stamp.is_file() and json.loads(stamp.read_text())["recipe"] == recipe:
        return twin, json.loads(stamp.read_text())["swapped"]
    TWINS.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=TWINS))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        swapped = []
        if architecture != bundle.ARCHITECTURE:
            for dist_info in sorted(staging.glob("*.dist-info")):
                if "Root-Is-Purelib: false" in (dist_info / "WHEEL").read_text():
                    swapped.append(_swap_for_host_wheel(staging, dist_info, architecture, interpreter))
        bundle.check_bytecode(staging)
        stamp_text = json.dumps({"recipe": recipe, "swapped": swapped}, indent=2) + "\n"
        (staging / bundle.STAMP).write_text(stamp_text)
        _make_writable(twin)
        shutil.rmtree(twin, ignore_errors=True)
        staging.rename(twin)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _make_read_only(twin)
    return twin, swapped


def _swap_for_host_wheel(root: Path, dist_info: Path, architecture: str, interpreter: str) -> str:
    metadata = dict(line.split(": ", 1) for line in (dist_info / "METADATA").read_text().splitlines() if ": " in line)
    requirement = f"{metadata['Name']}=={metadata['Version']}"
    removed_dirs = set()
    for row in csv.reader((dist_info / "RECORD").read_text().splitlines()):
        path = (root / row[0]).resolve()
        if root.resolve() not in path.parents or not path.is_file():
            continue  # console scripts outside the package (bundle.py drops bin/ anyway)
        path.unlink()
        (path.parent / "__pycache__" / f"{path.stem}.{CACHE_TAG}.pyc").unlink(missing_ok=True)
        removed_dirs.add(path.parent)
    for directory in sorted(removed_dirs, key=lambda p: len(p.parts), reverse=True):
        for empty in (directory / "__pycache__", directory):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
    shutil.rmtree(dist_info, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as wheels:
        bundle._pip_install([requirement], Path(wheels), architecture, dependencies=False)
        bundle.compile_bytecode(Path(wheels), interpreter)
        for entry in Path(wheels).iterdir():
            entry.rename(root / entry.name)
    return requirement


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def _make_writable(root: Path) -> None:
    if root.exists():
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def read_only_prefix(root: Path) -> tuple[list[str], str]:
    """A command prefix that runs a command with `root` mounted read-only (root ignores write
    permissions), and how the code is kept read-only."""
    prefix = ["unshare", "--mount", "sh", "-c", f'mount --bind -o ro "{root}" "{root}" && exec "$@"', "sh"]
    if shutil.which("unshare"):
        probe = subprocess.run([*prefix, "sh", "-c", f'! test -w "{root}"'], capture_output=True)
        if probe.returncode == 0:
            return prefix, "read-only bind mount"
    return [], "no write permission" + (" (but running as root)" if os.geteuid() == 0 else "")


# ---- one cold start ------------------------------------------------------------------------------
def lambda_environment(package: str, root: Path) -> dict[str, str]:
    """What the function's environment holds on Lambda, with the emulation's endpoint and resources
    (exported by the Emulator into this process's environment)."""
    function = spec.FUNCTIONS.get(package, spec.FUNCTIONS["api"])
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return inherited | {
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(root),
        "AWS_LAMBDA_FUNCTION_NAME": package,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{spec.LAMBDA_PYTHON}",
        "_HANDLER": function.handler,
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_METRICS_DISABLED": "false",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "REPLICATE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **spec.RUNTIME_ENV,
    }


def event_for(case: Case, directory: Path) -> Path:
    """The case's sample event, about a pending job of its own (stored in the emulation)."""
    from local.invoke import SAMPLE_JOB_ID, seed_sample_job
    from shared.models import to_iso, utcnow

    job_id = str(uuid.uuid4())
    seed_sample_job(job_id)
    event = json.loads((ROOT / case.event).read_text().replace(SAMPLE_JOB_ID, job_id))
    if "execution_started_at" in event:
        event["execution_started_at"] = to_iso(utcnow())
    for n, record in enumerate(event.get("Records") or []):
        if "dynamodb" in record:  # a new batch, not a retry of the last run's (its token is theirs)
            record["dynamodb"]["SequenceNumber"] = f"{time.time_ns()}{n:03d}"
    if "webhook-signature" in (event.get("headers") or {}):
        from local.replicate_double.webhooks import sign

        headers = event["headers"]
        headers["webhook-timestamp"] = str(int(time.time()))
        headers["webhook-signature"] = sign(
            WEBHOOK_SECRET, headers["webhook-id"], int(headers["webhook-timestamp"]), event["body"]
        )
    path = directory / f"{job_id}.json"
    path.write_text(json.dumps(event))
    return path


def cold_start(case: Case, twin: Path, prefix: list[str], interpreter: str, events: Path) -> dict:
    function = spec.FUNCTIONS.get(case.package, spec.FUNCTIONS["api"])
    event = event_for(case, events)
    command = [*prefix, interpreter, "-S", str(CHILD), str(twin), case.package, function.handler]
    command += [str(function.memory_mb), str(event)]
    env = lambda_environment(case.package, twin)
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=twin, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"{case.name}: the cold start failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if case.status is not None and measured["status"] != case.status:
        raise RuntimeError(f"{case.name}: answered {measured['status']}, expected {case.status}")
    return measured


def settle(timeout: float = 20) -> None:
    """Wait until the emulation has no workflow running (a dispatched job runs in this process):
    the next cold start should not share the CPU with it."""
    from shared.aws import client
    from shared.settings import get_settings

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = client("stepfunctions").list_executions(
            stateMachineArn=get_settings().state_machine_arn, statusFilter="RUNNING"
        )["executions"]
        if not running:
            return
        time.sleep(0.2)


# ---- the benchmark -------------------------------------------------------------------------------
def run(cases: list[Case], runs: int) -> dict[str, list[dict]]:
    interpreter = bundle.find_interpreter()
    packages = sorted({case.package for case in cases})
    twins: dict[str, Path] = {}
    swapped: set[str] = set()
    for package in packages:
        twins[package], package_swapped = host_twin(package, interpreter)
        swapped.update(package_swapped)
    prefixes = {package: read_only_prefix(twins[package]) for package in packages}
    before = {package: _files(twins[package]) for package in packages}

    print(f"Python {_version(interpreter)} ({interpreter}), {host_architecture()} host twins of the arm64 packages")
    print(f"swapped for this machine's wheels: {', '.join(sorted(swapped)) or 'nothing'}")
    print(f"code: {prefixes[packages[0]][1]}, PYTHONDONTWRITEBYTECODE=1; {runs} runs, cases interleaved\n")
    from local.emulator import Emulator

    measured: dict[str, list[dict]] = {case.name: [] for case in cases}
    from shared.observability import logger

    logger.setLevel("ERROR")  # the functions this process runs for a dispatched job's workflow
    with Emulator(env={"MOCK_GENERATION_SECONDS": "0"}), tempfile.TemporaryDirectory() as events:
        for run_index in range(runs):
            shift = run_index % len(cases)
            order = cases[shift:] + cases[:shift]
            for case in order if run_index % 2 == 0 else order[::-1]:
                prefix = prefixes[case.package][0]
                result = cold_start(case, twins[case.package], prefix, interpreter, Path(events))
                measured[case.name].append(result)
                settle()
            print(f"  run {run_index + 1}/{runs} done", file=sys.stderr, flush=True)
    for package in packages:
        if _files(twins[package]) != before[package]:
            raise RuntimeError(f"{package}: a cold start wrote into its package")
    return measured


def report(cases: list[Case], measured: dict[str, list[dict]]) -> str:
    """Medians of wall time (what a caller waits) and of CPU time (what the machine's load changes
    least), per case; then the api against the baseline: the median of the runs' paired ratios."""
    header = f"{'':<20}{'wall time, ms':^33}{'CPU time, ms':^22}"
    lines = [header, f"{'case':<20}{'init':>9}{'first call':>12}{'total':>12}{'init':>11}{'total':>11}"]
    lines[-1] += f"{'peak MB':>9}   loaded at init"
    medians: dict[str, list[float]] = {}
    for case in cases:
        runs = measured[case.name]
        values = [
            statistics.median(r["init_ms"] for r in runs),
            statistics.median(r["first_call_ms"] for r in runs),
            statistics.median(r["init_ms"] + r["first_call_ms"] for r in runs),
            statistics.median(r["init_cpu_ms"] for r in runs),
            statistics.median(r["init_cpu_ms"] + r["first_call_cpu_ms"] for r in runs),
        ]
        medians[case.name] = values
        peak = statistics.median(r["peak_rss_mb"] for r in runs)
        loaded = ", ".join(runs[0]["loaded_at_init"]) or "-"
        lines.append(
            f"{case.name:<20}{values[0]:>9.0f}{values[1]:>12.0f}{values[2]:>12.0f}{values[3]:>11.0f}{values[4]:>11.0f}"
            f"{peak:>9.0f}   {loaded}"
        )
    lines.append("")
    for api, baseline in COMPARED:
        if api in medians and baseline in medians:
            # Paired: each run's api against the same run's baseline (its neighbour in time), then
            # the median of those ratios: less moved by the load of the moment than medians alone.
            ratios = [statistics.median(_paired(measured[api], measured[baseline], key)) for key in RATIO_KEYS]
            label = f"api/base {api.removeprefix('api: ')}"
            lines.append(
                f"{label:<20}{ratios[0]:>8.2f}x{ratios[1]:>11.2f}x{ratios[2]:>11.2f}x{ratios[3]:>10.2f}x{ratios[4]:>10.2f}x"
            )
    return "\n".join(lines)


RATIO_KEYS = (
    lambda r: r["init_ms"],
    lambda r: r["first_call_ms"],
    lambda r: r["init_ms"] + r["first_call_ms"],
    lambda r: r["init_cpu_ms"],
    lambda r: r["init_cpu_ms"] + r["first_call_cpu_ms"],
)


def _paired(api: list[dict], baseline: list[dict], key) -> list[float]:
    return [key(a) / key(b) for a, b in zip(api, baseline, strict=True)]


def _files(root: Path) -> int:
    return sum(1 for _ in root.rglob("*"))


def _version(interpreter: str) -> str:
    return subprocess.run([interpreter, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="cold starts per case (default 15)")
    parser.add_argument("--only", nargs="*", help="packages to measure (default: every case)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    cases = [case for case in CASES if not args.only or case.package in args.only]
    try:
        measured = run(cases, args.runs)
    except bundle.BundleError as error:
        sys.exit(f"bench.cold_start: {error}")
    RESULTS.write_text(json.dumps(measured, indent=1) + "\n")
    print(report(cases, measured))
    print(f"\n(every run's figures: {RESULTS.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
