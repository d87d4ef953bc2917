"""One cold start, run by bench/cold_start.py in a fresh interpreter of the Lambda runtime's Python:
import the handler module from the package root as Lambda's runtime does (init), call the handler
once with the event (first call), and print the timings as one JSON line (the last line).

    python3.12 -S bench/cold_start_child.py <package root> <function> <module.function> <memory MB> <event.json>

Uses the standard library only: nothing from this repository is on sys.path but the package.
"""

import importlib
import json
import sys
import time

# What init loaded, reported for each case: what a cold start should not pay for.
WATCHED = ("boto3", "botocore.client", "aws_xray_sdk", "aws_lambda_powertools.event_handler", "fastapi", "PIL", "httpx")


class Context:
    """The parts of Lambda's context object that handlers and Powertools read."""

    def __init__(self, name: str, memory_mb: str, timeout_seconds: float) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = "00000000-0000-4000-8000-000000000001"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "bench"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def loaded() -> list[str]:
    return [name for name in WATCHED if name in sys.modules]


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike getrusage, not inherited across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    root, function, handler_name, memory_mb, event_file = sys.argv[1:6]
    with open(event_file) as handle:
        event = json.load(handle)
    module_name, function_name = handler_name.rsplit(".", 1)
    sys.path.insert(0, root)  # Lambda puts the package root (/var/task) first

    started, started_cpu = time.perf_counter(), time.process_time()
    handler = getattr(importlib.import_module(module_name), function_name)
    initialized, initialized_cpu = time.perf_counter(), time.process_time()
    at_init = loaded()
    context = Context(name=function, memory_mb=memory_mb, timeout_seconds=30)
    result = handler(event, context)
    answered, answered_cpu = time.perf_counter(), time.process_time()

    status = result.get("statusCode") if isinstance(result, dict) else None
    print(
        json.dumps(
            {
                "init_ms": (initialized - started) * 1000,
                "first_call_ms": (answered - initialized) * 1000,
                # CPU time: what the machine's load changes least (waits on the emulation excluded)
                "init_cpu_ms": (initialized_cpu - started_cpu) * 1000,
                "first_call_cpu_ms": (answered_cpu - initialized_cpu) * 1000,
                "status": status,
                "loaded_at_init": at_init,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
