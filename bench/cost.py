"""`make cost`: what a job costs on AWS, counted on the emulation and priced at list prices.

Jobs run through the real pipeline (gateway, api, queue, dispatcher, workflow, worker, Replicate
double or mock generator) in each mode, while a client polls the job's status every 2 s and then
GETs the job once. As deployed, every /api/v1 call carries an API key (API_AUTH=keys), checked by
the authorizer function, whose answer the gateway caches for 60 s per key as API Gateway does.
Every billable operation is counted where it happens:

- Lambda: each invocation and its billed duration (wall time, rounded up to 1 ms) x the memory of
  infra/spec.py; the functions' log output (Powertools JSON lines and EMF metrics) in bytes;
- DynamoDB: request units from the stored items' sizes (moto's item before and after each write,
  the larger one counts; transactions x2; KEYS_ONLY index entries added, moved or removed), read
  units from item sizes (4 KB, eventually consistent = half);
- SQS, S3, Secrets Manager: requests, through a botocore hook on the emulation's session;
- Step Functions: state transitions from each execution's history; its log bytes at the template's
  log level; API Gateway: every request the api function serves, and its access log line (the
  provider's webhooks go to the webhook function's URL: Lambda only);
- X-Ray: trace roots per job x their sampling in the synthesized template: executions by its
  sampling rule; invocations of functions in Active mode at Lambda's fixed rate (`-c tracing=all`).

Prices: shared/prices.json (source and date), which the functions price each job's cost with.
Idle cost: from a `cdk synth` of the stack (alarms, dashboards, secrets). The last line is the
deployed-default total.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from shared.usage import item_size  # noqa: E402 (after the path)
from shared.usage import prices as _prices  # noqa: E402

PRICES = _prices()  # shared/prices.json: the one price table, which the functions price jobs with too
SECONDS_PER_MONTH = 30 * 86_400
JOBS_PER_MONTH = 1_000_000  # the volume the X-Ray reservoir is spread over
CLIENT_POLL_SECONDS = 2.0
# Lambda's own lines per invocation (START, END, REPORT with the XRAY line), as it writes them in
# text format; a function whose system log level is WARN (JSON format) gets none of them.
PLATFORM_LOG_BYTES = 330
# The default X-Ray rule when the template has none, and Lambda's fixed sampling of the requests an
# Active function gets without a trace header (per function; no rule changes it): 1 trace/s, then 5%.
DEFAULT_SAMPLING = {"reservoir": 1, "rate": 0.05}

_context = threading.local()


def current_function() -> str | None:
    stack = getattr(_context, "stack", None)
    if stack:
        return stack[-1]
    # The SQS event source mapping's own receives and deletes are billed SQS requests.
    return "event source" if threading.current_thread().name == "SqsEventSource" else None


@contextmanager
def running(name: str) -> Iterator[None]:
    stack = _context.__dict__.setdefault("stack", [])
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


# ---- DynamoDB request units (item sizes: shared/usage.py) ----------------------------------------
class DynamoSizer:
    """Request units of DynamoDB calls, from the emulation's stored items."""

    def __init__(self) -> None:
        from infra import spec

        self.key = spec.TABLE.partition_key
        self.indexes = spec.TABLE.indexes

    def _stored(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        from moto.dynamodb.models import dynamodb_backends
        from moto.dynamodb.models.dynamo_type import DynamoType

        from local.lambdas import ACCOUNT, REGION

        item = dynamodb_backends[ACCOUNT][REGION].get_table(table).get_item(DynamoType(key[self.key]))
        return item.to_json()["Attributes"] if item else None

    def writes(self, operation: str, params: dict[str, Any]) -> list[tuple[str, dict, bool]]:
        """(table, key, transactional) of each item a write touches."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params.get("Key") or {self.key: params["Item"][self.key]}
            return [(params["TableName"], key, False)]
        if operation == "TransactWriteItems":
            found = []
            for entry in params["TransactItems"]:
                ((_, part),) = entry.items()
                key = part.get("Key") or {self.key: part["Item"][self.key]}
                found.append((part["TableName"], key, True))
            return found
        if operation == "BatchWriteItem":
            return [
                (table, r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"], False)
                for table, requests in params["RequestItems"].items()
                for r in requests
            ]
        return []

    def before(self, operation: str, params: dict[str, Any]) -> list[tuple[str, dict, bool, dict | None]]:
        return [(t, k, tx, self._stored(t, k)) for t, k, tx in self.writes(operation, params)]

    def write_units(self, touched: list[tuple[str, dict, bool, dict | None]]) -> tuple[float, float]:
        """(table write units, index write units) once the call is done."""
        table_units = index_units = 0.0
        for table, key, transactional, old in touched:
            new = self._stored(table, key)
            size = max(item_size(old or {}), item_size(new or {}))
            table_units += max(1, math.ceil(size / 1024)) * (2 if transactional else 1)
            for index in self.indexes:
                before, after = self._index_key(old, index), self._index_key(new, index)
                if before != after:  # KEYS_ONLY: only a moved, added or removed entry is written
                    index_units += (before is not None) + (after is not None)
        return table_units, index_units

    def _index_key(self, item: dict | None, index: Any) -> tuple | None:
        if not item or index.partition_key not in item or index.sort_key not in item:
            return None
        return json.dumps(item[index.partition_key]), json.dumps(item[index.sort_key])

    def read_units(self, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> float:
        eventual = 0.5
        if operation == "GetItem":
            factor = 1 if params.get("ConsistentRead") else eventual
            size = item_size(self._stored(params["TableName"], params["Key"]) or {})
            return max(1, math.ceil(size / 4096)) * factor
        if operation == "BatchGetItem":
            units = 0.0
            for table, request in params["RequestItems"].items():
                factor = 1 if request.get("ConsistentRead") else eventual
                for key in request["Keys"]:
                    units += max(1, math.ceil(item_size(self._stored(table, key) or {}) / 4096)) * factor
            return units
        if operation == "TransactGetItems":
            return sum(
                2 * max(1, math.ceil(item_size(self._stored(g["Get"]["TableName"], g["Get"]["Key"]) or {}) / 4096))
                for g in params["TransactItems"]
            )
        if operation in ("Query", "Scan"):
            factor = 1 if params.get("ConsistentRead") else eventual
            size = sum(item_size(i) for i in parsed.get("Items", []))
            return max(1, math.ceil(size / 4096)) * factor
        return 0.0


# ---- the meter ---------------------------------------------------------------------------------
@dataclass
class Usage:
    """Billable quantities, summed over a run."""

    lambda_requests: Counter = field(default_factory=Counter)  # function -> invocations
    lambda_ms: Counter = field(default_factory=Counter)  # function -> billed ms
    log_bytes: Counter = field(default_factory=Counter)  # log group -> bytes
    requests: Counter = field(default_factory=Counter)  # "dynamodb write units", "sqs", ...
    metric_names: set = field(default_factory=set)


class Meter:
    def __init__(self, platform_log_bytes: dict[str, int]) -> None:
        self.usage = Usage()
        self._lock = threading.Lock()
        self._dynamo = DynamoSizer()
        self._platform_log_bytes = platform_log_bytes  # function -> bytes per invocation

    def reset(self) -> Usage:
        with self._lock:
            usage, self.usage = self.usage, Usage()
        return usage

    def add(self, counter: str, key: str, amount: float = 1) -> None:
        with self._lock:
            getattr(self.usage, counter)[key] += amount

    # Lambda ------------------------------------------------------------------------------------
    def wrap_invoke(self, invoke: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
        def metered(name: str, event: Any) -> Any:
            started = time.perf_counter()
            try:
                with running(name):
                    return invoke(name, event)
            finally:
                self.add("lambda_requests", name)
                self.add("lambda_ms", name, math.ceil((time.perf_counter() - started) * 1000))
                self.add("log_bytes", name, self._platform_log_bytes.get(name, PLATFORM_LOG_BYTES))

        return metered

    def output(self, real: Any) -> Any:
        meter = self

        class Output(io.TextIOBase):
            """stdout: what a function prints is its log (counted, not shown); the rest passes."""

            def write(self, text: str) -> int:
                name = current_function()
                if name is None or name == "event source":
                    return real.write(text)
                meter.add("log_bytes", name, len(text.encode()))
                if '"_aws"' in text:
                    with meter._lock:
                        for directive in json.loads(text)["_aws"]["CloudWatchMetrics"]:
                            meter.usage.metric_names.update(m["Name"] for m in directive["Metrics"])
                return len(text)

            def flush(self) -> None:
                real.flush()

        return Output()

    # AWS calls ---------------------------------------------------------------------------------
    def install(self, session: Any) -> None:
        session.events.register("before-parameter-build", self._before)
        session.events.register("after-call", self._after)

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        who = current_function()
        if who is None:
            return
        context["cost.who"], context["cost.params"] = who, params
        if model.service_model.service_name == "dynamodb":
            context["cost.touched"] = self._dynamo.before(model.name, params)

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if "cost.who" not in context:
            return
        service, operation, params = model.service_model.service_name, model.name, context["cost.params"]
        if service == "dynamodb":
            table, index = self._dynamo.write_units(context.get("cost.touched", []))
            self.add("requests", "dynamodb write units", table + index)
            self.add("requests", "dynamodb read units", self._dynamo.read_units(operation, params, parsed))
        elif service == "sqs":
            if operation == "ReceiveMessage" and not parsed.get("Messages"):
                return  # empty long polls of the event source: an idle cost, not a job's
            body = params.get("MessageBody") or ""
            self.add("requests", "sqs requests", max(1, math.ceil(len(body.encode()) / 65_536)))
        elif service == "s3":
            kind = "s3 get requests" if operation in ("GetObject", "HeadObject") else "s3 put requests"
            self.add("requests", kind)
        elif service == "secretsmanager":
            self.add("requests", "secretsmanager calls")


# ---- the template ------------------------------------------------------------------------------
def synthesize(context: dict[str, str]) -> dict[str, Any]:
    """The dev stage's template, offline (`-c assets=source`), as tests/infra does it."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from infra.app import build

    defaults = json.loads((ROOT / "cdk.json").read_text())["context"]
    app = App(context=defaults | {"assets": "source"} | context)
    return Template.from_stack(build(app)).to_json()


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def alarm_metric_count(alarm: dict[str, Any]) -> int:
    """The metrics an alarm is billed for: its metric, or each metric a math expression reads (the
    expression itself is not one)."""
    queries = alarm["Properties"].get("Metrics")
    return sum("MetricStat" in q for q in queries) if queries else 1


def idle_cost(template: dict[str, Any]) -> list[tuple[str, int, float]]:
    """(item, count, $ per month) of what the stack costs with no traffic."""
    alarm_metrics = sum(alarm_metric_count(a) for a in resources(template, "AWS::CloudWatch::Alarm"))
    items = [
        ("alarm metrics", alarm_metrics, PRICES["cloudwatch_alarm_metric_month"]),
        ("dashboards", len(resources(template, "AWS::CloudWatch::Dashboard")), PRICES["cloudwatch_dashboard_month"]),
        ("secrets", len(resources(template, "AWS::SecretsManager::Secret")), PRICES["secretsmanager_secret_month"]),
    ]
    return [(name, count, count * price) for name, count, price in items]


def sampling(template: dict[str, Any]) -> dict[str, float]:
    rules = resources(template, "AWS::XRay::SamplingRule")
    if not rules:
        return DEFAULT_SAMPLING
    rule = rules[0]["Properties"]["SamplingRule"]
    return {"reservoir": rule["ReservoirSize"], "rate": rule["FixedRate"]}


def platform_log_bytes(template: dict[str, Any]) -> dict[str, int]:
    """Bytes of Lambda's own log lines per invocation of each function, by its logging config."""
    from infra.spec import FUNCTIONS

    found = {}
    for function in resources(template, "AWS::Lambda::Function"):
        props = function["Properties"]
        name = next((n for n in FUNCTIONS if str(props.get("FunctionName", "")).endswith(f"-{n}")), None)
        if name:
            config = props.get("LoggingConfig") or {}
            quiet = config.get("LogFormat") == "JSON" and config.get("SystemLogLevel") == "WARN"
            found[name] = 0 if quiet else PLATFORM_LOG_BYTES
    return found


def workflow_log_level(template: dict[str, Any]) -> str:
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine")
    config = machine["Properties"].get("LoggingConfiguration") or {}
    return config.get("Level", "OFF"), bool(config.get("IncludeExecutionData"))


# ---- running jobs ------------------------------------------------------------------------------
@dataclass
class Mode:
    name: str
    label: str
    env: dict[str, str]
    processing_seconds: float = 10.0


@dataclass
class Run:
    mode: Mode
    jobs: int
    usage: Usage
    transitions: int
    workflow_log_bytes: dict[str, int]  # by log level: bytes per job
    executions: int
    seconds: float


def run_jobs(api: Any, count: int) -> tuple[list[str], float]:
    """Submit `count` jobs at once; each client polls its status every 2 s, then GETs the job."""
    ids: list[str] = []
    durations: list[float] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        started = time.monotonic()
        response = api.post("/api/v1/generate", json={"prompt": f"a lighthouse at dawn, oil painting, #{n}"})
        response.raise_for_status()
        job_id = response.json()["job_id"]
        while True:
            time.sleep(CLIENT_POLL_SECONDS)
            status = api.get(f"/api/v1/status/{job_id}").json()["status"]
            if status in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() - started > 120:
                raise RuntimeError(f"job {job_id} still {status} after 120 s")
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] != "completed":
            raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
        with lock:
            ids.append(job_id)
            durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(ids) != count:
        raise RuntimeError("some jobs did not complete (see above)")
    return ids, sum(durations) / len(durations)


def history_of(emulator: Any, job_ids: list[str]) -> list[list[dict[str, Any]]]:
    """The finished executions' histories (waits for each to end)."""
    from shared.aws import client

    sfn = client("stepfunctions")
    histories = []
    for job_id in job_ids:
        deadline = time.monotonic() + 30
        while True:
            executions = [
                e
                for page in sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=emulator.resources.state_machine_arn
                )
                for e in page["executions"]
                if e["name"].startswith(f"{job_id}-")
            ]
            if executions and all(e["status"] != "RUNNING" for e in executions):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workflow of job {job_id} did not end")
            time.sleep(0.2)
        for execution in executions:
            pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution["executionArn"])
            histories.append([event for page in pages for event in page["events"]])
    return histories


def transitions_of(history: list[dict[str, Any]]) -> int:
    """Billed transitions: every state entered, plus every retry of a task."""
    count = 0
    for event in history:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            count, scheduled = count + 1, 0
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled"):
            scheduled += 1
            count += scheduled > 1
    return count


def workflow_log_bytes(history: list[dict[str, Any]], arn: str, level: str, include_data: bool) -> int:
    """Bytes Step Functions writes to CloudWatch for one execution, one line per history event it logs."""
    if level == "OFF":
        return 0
    total = 0
    for event in history:
        failed = any(word in event["type"] for word in ("Failed", "TimedOut", "Aborted"))
        if level in ("ERROR", "FATAL") and not failed:
            continue
        details = {k: v for k, v in event.items() if k.endswith("EventDetails")}
        if not include_data:
            details = {k: {x: y for x, y in v.items() if x not in ("input", "output")} for k, v in details.items()}
        line = {
            "id": str(event["id"]),
            "type": event["type"],
            "details": next(iter(details.values()), {}),
            "previous_event_id": str(event.get("previousEventId", 0)),
            "event_timestamp": str(int(event["timestamp"].timestamp() * 1000)),
            "execution_arn": arn,
            "redrive_count": "0",
        }
        total += len(json.dumps(line).encode())
    return total


def measure(emulator: Any, meter: Meter, api: Any, double: Any, mode: Mode, jobs: int, template: dict) -> Run:
    if double is not None:
        double.processing_seconds = mode.processing_seconds
    emulator.configure(**mode.env)
    emulator.authorizer.forget()  # each mode starts with API Gateway's authorizer cache cold
    level, include_data = workflow_log_level(template)
    meter.reset()
    started = time.monotonic()
    job_ids, seconds = run_jobs(api, jobs)
    histories = history_of(emulator, job_ids)
    time.sleep(1.0)  # late webhook deliveries (duplicates of `completed`) are part of the job
    emulator.counters.settle(timeout=60, flush=False)  # so are its changes' batches on the table stream
    usage = meter.reset()
    arn = f"arn:aws:states:us-east-1:123456789012:execution:{'x' * 48}:{job_ids[0]}-1"
    usage.log_bytes["workflow"] = sum(workflow_log_bytes(h, arn, level, include_data) for h in histories)
    return Run(
        mode=mode,
        jobs=jobs,
        usage=usage,
        transitions=sum(transitions_of(h) for h in histories),
        workflow_log_bytes={},
        executions=len(histories),
        seconds=seconds if seconds else time.monotonic() - started,
    )


# ---- pricing -----------------------------------------------------------------------------------
def access_log_line_bytes() -> int:
    """One API Gateway access log line in the stack's format, with typical values."""
    from infra.constructs.api import ACCESS_LOG_FORMAT

    typical = {
        "requestId": "Qm9GhjKLoAMEbXw=",
        "ip": "203.0.113.10",
        "caller": "AIDAJQABLZS4A3QDU576Q",
        "userArn": "arn:aws:iam::123456789012:user/client-app",
        "requestTime": "03/Dec/2026:14:52:13 +0000",
        "routeKey": "$default",
        "status": "200",
        "responseLength": "412",
        "latency": "48",
        "integrationLatency": "45",
        "integrationError": "-",
        "authorizerError": "-",
    }
    return len(json.dumps({key: typical.get(key, "-") for key in ACCESS_LOG_FORMAT}).encode())


def price(run: Run, template: dict[str, Any]) -> tuple[list[tuple[str, str, float]], float]:
    """(component, quantity per job, $ per job) rows, and the traces per job."""
    from infra.spec import FUNCTIONS

    u, n = run.usage, run.jobs
    rows: list[tuple[str, str, float]] = []
    for name in FUNCTIONS:
        if not u.lambda_requests[name]:
            continue
        memory = FUNCTIONS[name].memory_mb
        gb_s = u.lambda_ms[name] / 1000 * memory / 1024 / n
        requests = u.lambda_requests[name] / n
        cost = gb_s * PRICES["lambda_gb_second_arm64"] + requests * PRICES["lambda_request"]
        rows.append((f"Lambda {name} ({memory} MB)", f"{requests:.1f} calls, {gb_s:.3f} GB-s", cost))
    rows.append(
        (
            "Step Functions",
            f"{run.transitions / n:.1f} transitions",
            run.transitions / n * PRICES["stepfunctions_standard_transition"],
        )
    )
    writes, reads = u.requests["dynamodb write units"] / n, u.requests["dynamodb read units"] / n
    rows.append(("DynamoDB writes", f"{writes:.1f} WRU", writes * PRICES["dynamodb_write_request_unit"]))
    rows.append(("DynamoDB reads", f"{reads:.1f} RRU", reads * PRICES["dynamodb_read_request_unit"]))
    sqs = u.requests["sqs requests"] / n
    rows.append(("SQS", f"{sqs:.1f} requests", sqs * PRICES["sqs_standard_request"]))
    puts, gets = u.requests["s3 put requests"] / n, u.requests["s3 get requests"] / n
    rows.append(
        (
            "S3",
            f"{puts:.1f} PUT, {gets:.1f} GET",
            puts * PRICES["s3_put_copy_post_list_request"] + gets * PRICES["s3_get_request"],
        )
    )
    api_requests = u.lambda_requests["api"] / n
    rows.append(("API Gateway (HTTP API)", f"{api_requests:.1f} requests", api_requests * PRICES["http_api_request"]))
    if u.requests["secretsmanager calls"]:
        calls = u.requests["secretsmanager calls"] / n
        rows.append(("Secrets Manager", f"{calls:.1f} calls", calls * PRICES["secretsmanager_api_call"]))
    groups = Counter(u.log_bytes) + Counter({"access": u.lambda_requests["api"] * access_log_line_bytes()})
    log_bytes = sum(groups.values()) / n
    split = ", ".join(f"{g} {b / n / 1024:.1f}" for g, b in groups.most_common() if b)
    rows.append(
        (
            "CloudWatch Logs",
            f"{log_bytes / 1024:.1f} KB ({split})",
            log_bytes / 1024**3 * PRICES["cloudwatch_logs_ingested_gb"],
        )
    )
    # Trace roots: each execution, sampled by the template's rule (its Lambda tasks join its
    # trace); and each invocation of a function in Active mode that arrives without a sampled trace
    # (an API request: HTTP APIs do not trace; a provider webhook; an SQS, stream or EventBridge
    # event), which Lambda samples at its fixed rate per function, whatever the rules say.
    traces = run.executions / n * sampled_share(run.executions / n, sampling(template))
    roots = run.executions / n
    for name in active_functions(template):
        calls = u.lambda_requests[name] / n
        roots += calls
        traces += calls * sampled_share(calls, DEFAULT_SAMPLING)
    share = traces / roots if roots else 0.0
    rows.append(("X-Ray", f"{traces:.2f} traces ({share:.1%} of {roots:.1f})", traces * PRICES["xray_trace_recorded"]))
    return rows, traces


def sampled_share(per_job: float, rule: dict[str, float]) -> float:
    """The share of `per_job` trace roots a rule records at JOBS_PER_MONTH: its reservoir (traces a
    second) first, then its rate."""
    per_second = per_job * JOBS_PER_MONTH / SECONDS_PER_MONTH
    if not per_second:
        return 0.0
    kept = min(rule["reservoir"], per_second) + rule["rate"] * max(0.0, per_second - rule["reservoir"])
    return min(1.0, kept / per_second)


def active_functions(template: dict[str, Any]) -> list[str]:
    """The functions whose tracing mode is Active (they start traces of their own)."""
    from infra.spec import FUNCTIONS

    found = []
    for function in resources(template, "AWS::Lambda::Function"):
        props = function["Properties"]
        name = next((n for n in FUNCTIONS if str(props.get("FunctionName", "")).endswith(f"-{n}")), None)
        if name and (props.get("TracingConfig") or {}).get("Mode") == "Active":
            found.append(name)
    return found


MODES = {
    "mock": Mode("mock", "mock generator", {"REPLICATE_API_TOKEN": "", "WEBHOOK_BASE_URL": ""}),
    "webhook": Mode("webhook", "Replicate, webhooks, 10 s (deployed default)", {}),
    "poll": Mode("poll", "Replicate, polling, 10 s", {"WEBHOOK_BASE_URL": ""}),
    "sync": Mode("sync", "Replicate, sync-fast model (1 s)", {"WEBHOOK_BASE_URL": ""}, processing_seconds=1.0),
}
DEPLOYED_DEFAULT = "webhook"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3, help="jobs per mode, submitted at once")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, of " + ", ".join(MODES))
    parser.add_argument("-c", "--context", action="append", default=[], help="CDK context key=value for the synth")
    args = parser.parse_args(argv)
    context = dict(item.split("=", 1) for item in args.context)
    warnings.filterwarnings("ignore")

    import httpx

    from local.emulator import Emulator, free_port
    from local.replicate_double import ReplicateDouble

    print("synthesizing the stack ...", flush=True)
    template = synthesize(context)
    double = ReplicateDouble(processing_seconds=10.0).start()
    provider = {
        "REPLICATE_API_TOKEN": double.token,
        "REPLICATE_BASE_URL": double.base_url,
        "REPLICATE_OUTPUT_HOSTS": double.files_host,
        "SSL_CERT_FILE": str(double.ca_file),
        # As deployed: the functions log at the stack's level and publish their metrics (EMF).
        "POWERTOOLS_LOG_LEVEL": json.loads((ROOT / "cdk.json").read_text())["context"]["logLevel"],
        "POWERTOOLS_METRICS_DISABLED": "false",
        # As deployed: every /api/v1 call carries an API key, checked by the authorizer function.
        "API_AUTH": "keys",
    }
    meter = Meter(platform_log_bytes(template))
    emulator = Emulator(api_port=free_port(), env=provider)
    emulator.runtime.invoke = meter.wrap_invoke(emulator.runtime.invoke)
    real_stdout = sys.stdout
    runs: list[Run] = []
    try:
        emulator.start()
        from infra.constructs.api import KEY_CACHE_SECONDS
        from shared.auth import create_key

        emulator.authorizer.cache_seconds = KEY_CACHE_SECONDS  # API Gateway's cache of the answer
        key = create_key("cost-bench").key
        import boto3

        from shared.aws import reset_clients
        from shared.observability import logger

        meter.install(boto3.DEFAULT_SESSION)
        reset_clients()  # clients made from now on carry the meter's hooks
        sys.stdout = meter.output(real_stdout)
        for handler in logger._logger.handlers:
            handler.setStream(sys.stdout)
        webhook_env = {"WEBHOOK_BASE_URL": emulator.gateway.url}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=emulator.gateway.url, timeout=30, headers=headers) as api:
            for name in args.modes.split(","):
                mode = MODES[name]
                base = provider | webhook_env | {k: v for k, v in mode.env.items()}
                print(f"running {args.jobs} jobs: {mode.label} ...", file=real_stdout, flush=True)
                runs.append(
                    measure(
                        emulator,
                        meter,
                        api,
                        double,
                        Mode(mode.name, mode.label, base, mode.processing_seconds),
                        args.jobs,
                        template,
                    )
                )
    finally:
        sys.stdout = real_stdout
        emulator.stop()
        double.stop()
    report(runs, template, context)


def report(runs: list[Run], template: dict[str, Any], context: dict[str, str]) -> None:
    priced = {run.mode.name: price(run, template) for run in runs}
    components = [row[0] for row in next(iter(priced.values()))[0]]
    for run in runs:
        components += [c for c, _, _ in priced[run.mode.name][0] if c not in components]
    width = max(len(c) for c in components) + 2
    print()
    print("AWS cost per 1M jobs, by component ($, list prices of shared/prices.json, as of " + PRICES["as_of"] + ")")
    print("component".ljust(width) + "".join(run.mode.name.rjust(12) for run in runs))
    for component in components:
        cells = []
        for run in runs:
            costs = {c: cost for c, _, cost in priced[run.mode.name][0]}
            cells.append(f"{costs[component] * 1e6:.2f}" if component in costs else "-")
        print(component.ljust(width) + "".join(cell.rjust(12) for cell in cells))
    totals = {run.mode.name: sum(cost for _, _, cost in priced[run.mode.name][0]) for run in runs}
    print("total per job".ljust(width) + "".join(f"{totals[r.mode.name]:.7f}".rjust(12) for r in runs))
    print("total per 1M jobs".ljust(width) + "".join(f"{totals[r.mode.name] * 1e6:.2f}".rjust(12) for r in runs))
    for run in runs:
        print(f"\n{run.mode.name}: {run.mode.label}; {run.jobs} jobs, {run.seconds:.1f} s each, submit to last poll")
        for component, quantity, cost in priced[run.mode.name][0]:
            print(f"  {component.ljust(width)}{quantity.ljust(56)}${cost * 1e6:9.2f} per 1M")
    idle = idle_cost(template)
    shown = " ".join(f"-c {k}={v}" for k, v in context.items()) or "cdk.json defaults"
    print(f"\nidle cost per month (synthesized template, {shown}):")
    for name, count, cost in idle:
        print(f"  {name.ljust(width)}{str(count).ljust(56)}${cost:9.2f}")
    print(f"  {'total'.ljust(width)}{''.ljust(56)}${sum(c for _, _, c in idle):9.2f}")
    if DEPLOYED_DEFAULT in totals:
        setting = "deployed defaults" if not context else f"deployed defaults with {shown}"
        print(f"total per 1M jobs ({setting}): ${totals[DEPLOYED_DEFAULT] * 1e6:.2f}")


if __name__ == "__main__":
    main()
