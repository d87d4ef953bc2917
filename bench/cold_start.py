"""Cold start of each function: the import of its handler and its first invocation, each in a
fresh interpreter that has imported nothing else, against the emulation running in this process
(so creating the first AWS clients is counted, as on Lambda).

    make bench            # or: .venv/bin/python -m bench.cold_start --runs 5

Prints medians. Left out: Lambda's own runtime start and bundle unpacking; network latency to
AWS. Tracing is on, as deployed (the X-Ray SDK import is counted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("boto3", "PIL", "replicate", "httpx", "aws_xray_sdk")

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from functions.{fn}.app import handler
t1 = time.perf_counter()
from local.lambdas import LambdaContext
handler(json.loads({event!r}), LambdaContext({fn!r}))
t2 = time.perf_counter()
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"import_ms": (t1 - t0) * 1000, "first_call_ms": (t2 - t1) * 1000, "loaded": loaded}}))
"""

CASES = {
    "api (health)": ("api", "events/api/health.json"),
    "api (get job)": ("api", "events/api/get-job.json"),
    "dispatcher": ("dispatcher", "events/dispatcher/sqs-batch.json"),
    "worker (mock)": ("worker", "events/worker/generate.json"),
    "finalizer": ("finalizer", "events/finalizer/workflow-catch.json"),
}


def measure(function: str, event_file: str) -> dict:
    from local.invoke import SAMPLE_JOB_ID, seed_sample_job
    from shared.models import to_iso, utcnow

    job_id = str(uuid.uuid4())
    seed_sample_job(job_id)
    event = json.loads((ROOT / event_file).read_text().replace(SAMPLE_JOB_ID, job_id))
    if "execution_started_at" in event:
        event["execution_started_at"] = to_iso(utcnow())
    code = CHILD.format(root=str(ROOT), fn=function, event=json.dumps(event), heavy=HEAVY)
    env = os.environ | {"LAMBDA_TASK_ROOT": str(ROOT), "POWERTOOLS_TRACE_DISABLED": "false"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from local.emulator import Emulator

    with Emulator(env={"MOCK_GENERATION_SECONDS": "0"}):
        print(f"{'function':<16}{'import ms':>10}{'first call ms':>15}   heavy modules imported")
        for name, (function, event_file) in CASES.items():
            runs = [measure(function, event_file) for _ in range(args.runs)]
            imports = statistics.median(r["import_ms"] for r in runs)
            calls = statistics.median(r["first_call_ms"] for r in runs)
            print(f"{name:<16}{imports:>10.0f}{calls:>15.0f}   {', '.join(runs[0]['loaded']) or '-'}")


if __name__ == "__main__":
    main()
