"""`make invoke FN=<function> EVENT=events/<...>.json`: run one handler on a sample event against
a fresh emulation and print what it returns.

The sample events refer to SAMPLE_JOB_ID; a pending job with that id is stored first so they
have something to act on. A worker event's `execution_started_at` is set to now, as the
workflow does when it runs the task (a fixed date would always be past its deadline).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from local.emulator import Emulator

SAMPLE_JOB_ID = "0b1f3c9e-4a6d-4e8b-9c2f-7d5e1a3b6c80"


def seed_sample_job(job_id: str = SAMPLE_JOB_ID) -> None:
    """Store a pending job (without queueing it), for sample events to act on."""
    from shared.job_store import store
    from shared.models import GenerateRequest, Job, JobStatus, utcnow

    now = utcnow()
    request = GenerateRequest(prompt="a lighthouse at dawn", parameters={"width": 512, "height": 512})
    store().create(Job(job_id=job_id, status=JobStatus.PENDING, request=request, created_at=now, updated_at=now))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", help="api, dispatcher, worker or finalizer")
    parser.add_argument("event", type=Path, help="a JSON event, e.g. events/api/health.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    logging.basicConfig(level=logging.WARNING)

    event = json.loads(args.event.read_text())
    with Emulator() as emulator:
        seed_sample_job()
        if "execution_started_at" in event:
            from shared.models import to_iso, utcnow

            event["execution_started_at"] = to_iso(utcnow())
        try:
            result = emulator.runtime.invoke(args.function, event)
        except Exception as exc:
            print(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}, indent=2))
            return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
