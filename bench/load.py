"""`make load`: a burst of jobs against `make dev` (mock generation), with its figures.

Starts `python -m local.dev` on free ports, submits JOBS jobs from CLIENTS concurrent clients (one
connection per request, as curl scripts do), waits until every job ended, reads every job's detail,
and prints: the status codes of the submits, connection errors (submits and polls), jobs completed
/ failed / lost (404) / stuck, the rates, and the server process's peak resident memory, peak
thread count and CPU time, sampled throughout. It stops the run if the server passes --max-rss-mb.

The rates come from the jobs' own timestamps: a job is dispatched when its workflow starts
(created_at + metrics.queue_wait_seconds), and it ends at finished_at.
- dispatch rate: workflows started per second, first to last dispatch (DISPATCH_RATE_PER_SECOND
  caps it), also split at the last submit: while the burst still arrives, the API shares the
  process (on AWS its own containers) with the dispatcher and the workers;
- drain rate: jobs per second from the first dispatch to the last job's end.
The machine's load average is printed at both ends: on a shared machine the server competes for
CPU, and the CPU seconds per job say what the emulation itself costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from local.emulator import free_port

TERMINAL = {"completed", "failed", "cancelled"}


class Sampler(threading.Thread):
    """Peak RSS and thread count of a process, from /proc, every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.25, max_rss_mb: float = float("inf")) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.max_rss_mb = pid, interval, max_rss_mb
        self.peak_rss_mb = 0.0
        self.peak_threads = 0
        self.last_rss_mb = 0.0
        self.last_threads = 0
        self.over_limit = threading.Event()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            self.last_rss_mb = int(fields["VmRSS"].split()[0]) / 1024
            self.last_threads = int(fields["Threads"])
            self.peak_rss_mb = max(self.peak_rss_mb, self.last_rss_mb)
            self.peak_threads = max(self.peak_threads, self.last_threads)
            if self.last_rss_mb > self.max_rss_mb:
                self.over_limit.set()

    def cpu_seconds(self) -> tuple[float, float]:
        """User and system CPU time of the process so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0, 0.0
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def stop(self) -> None:
        self._stop.set()


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"local.dev exited with {process.returncode}")
        try:
            if call(port, "GET", "/health")[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("local.dev did not answer /health in time")


def moment(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def per_second(moments: list[float]) -> float | None:
    """Events per second between the first and the last of `moments` (sorted)."""
    return (len(moments) - 1) / (moments[-1] - moments[0]) if len(moments) > 2 and moments[-1] > moments[0] else None


@dataclass
class Rates:
    dispatch: float | None  # workflows started per second, first to last dispatch
    while_submitting: float | None  # the same, among the dispatches before the last submit
    after_submitting: float | None  # and after it: the queue draining on its own
    drain: float | None  # jobs ended per second, from the first dispatch to the last end

    @classmethod
    def of(cls, details: list[dict], last_submit: float) -> Rates:
        """From the jobs' own timestamps: a job is dispatched when its workflow starts
        (created_at + queue_wait_seconds) and ends at finished_at; `last_submit` is epoch seconds."""
        dispatched = sorted(
            moment(d["created_at"]) + d["metrics"]["queue_wait_seconds"]
            for d in details
            if d["metrics"].get("queue_wait_seconds") is not None
        )
        ended = [moment(d["finished_at"]) for d in details if d.get("finished_at")]
        drain = (
            len(ended) / (max(ended) - dispatched[0]) if dispatched and ended and max(ended) > dispatched[0] else None
        )
        return cls(
            dispatch=per_second(dispatched),
            while_submitting=per_second([t for t in dispatched if t <= last_submit]),
            after_submitting=per_second([t for t in dispatched if t > last_submit]),
            drain=drain,
        )


def rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}/s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every job to end")
    parser.add_argument("--max-rss-mb", type=float, default=4096, help="stop the run if the server passes this")
    parser.add_argument("--goal-rss-mb", type=float, default=1024, help="the peak resident memory goal")
    parser.add_argument("--goal-threads", type=int, default=200, help="the peak thread count goal (bounded)")
    args = parser.parse_args(argv)

    port, aws_port = free_port(), free_port()
    env = os.environ | {"PORT": str(port), "EMULATOR_PORT": str(aws_port)}
    env.pop("REPLICATE_API_TOKEN", None)
    log = tempfile.NamedTemporaryFile("w+", prefix="load-", suffix=".log", delete=False)  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "local.dev", "--no-dotenv"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    sampler = Sampler(server.pid, max_rss_mb=args.max_rss_mb)
    ok = False
    try:
        wait_ready(port, server)
        sampler.start()
        dispatch_rate = float(env.get("DISPATCH_RATE_PER_SECOND", "8"))
        print(
            f"{args.jobs} jobs from {args.clients} clients; mock generation; "
            f"DISPATCH_RATE_PER_SECOND={dispatch_rate:g}; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
            flush=True,
        )

        codes: Counter[int | str] = Counter()
        job_ids: list[str] = []
        lock = threading.Lock()

        def submit(i: int) -> None:
            try:
                status, body = call(port, "POST", "/api/v1/generate", {"prompt": f"load test {i}"})
            except OSError as exc:
                status, body = type(exc).__name__, {}
            with lock:
                codes[status] += 1
                if status == 202:
                    job_ids.append(body["job_id"])

        started, cpu_before = time.monotonic(), sampler.cpu_seconds()
        with ThreadPoolExecutor(args.clients) as clients:
            list(clients.map(submit, range(args.jobs)))
        submitted, last_submit = time.monotonic() - started, time.time()
        print(
            f"submitted in {submitted:.1f} s ({args.jobs / submitted:.0f}/s): "
            + ", ".join(f"{code} x {n}" for code, n in sorted(codes.items(), key=str)),
            flush=True,
        )

        # Watch the O(1) counters while the queue drains, then read every job once.
        deadline = time.monotonic() + args.timeout
        poll_errors: Counter[str] = Counter()
        while time.monotonic() < deadline and not sampler.over_limit.is_set():
            try:
                stats = call(port, "GET", "/api/v1/stats")[1]
            except OSError as exc:
                poll_errors[type(exc).__name__] += 1
                time.sleep(0.5)
                continue
            if sum(stats.get("by_status", stats).get(s, 0) for s in TERMINAL) >= len(job_ids):
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
        (user, system), (user_before, system_before) = sampler.cpu_seconds(), cpu_before
        user, system = user - user_before, system - system_before
        cpu = user + system
        if sampler.over_limit.is_set():
            print(f"STOPPED: the server passed {args.max_rss_mb:.0f} MB resident")

        def detail(job_id: str) -> tuple[int, dict]:
            try:
                return call(port, "GET", f"/api/v1/jobs/{job_id}")
            except OSError as exc:
                poll_errors[type(exc).__name__] += 1
                return 0, {}

        statuses: Counter[str] = Counter()
        details = []
        with ThreadPoolExecutor(args.clients) as clients:
            for status, body in clients.map(detail, job_ids):
                statuses["lost" if status == 404 else body.get("status", f"HTTP {status}")] += 1
                if status == 200:
                    details.append(body)
        stuck = sum(n for s, n in statuses.items() if s not in TERMINAL and s != "lost")
        errors = sum(n for code, n in codes.items() if isinstance(code, str)) + sum(poll_errors.values())
        rates = Rates.of(details, last_submit)
        print(
            f"jobs: {dict(statuses)}; lost {statuses['lost']}, stuck {stuck}; "
            f"connection errors {errors} (submits {dict((c, n) for c, n in codes.items() if isinstance(c, str))}, "
            f"polls {dict(poll_errors)})\n"
            f"dispatch rate {rate(rates.dispatch)} (while the submits arrived {rate(rates.while_submitting)}, "
            f"after them {rate(rates.after_submitting)}); drain rate {rate(rates.drain)} (first dispatch to last "
            f"end); DISPATCH_RATE_PER_SECOND={dispatch_rate:g}\n"
            f"wall time {wall:.1f} s from the first submit to the last end ({len(job_ids) / wall:.1f} jobs/s)\n"
            f"server process: peak RSS {sampler.peak_rss_mb:.0f} MB, peak threads {sampler.peak_threads} "
            f"(at the end {sampler.last_rss_mb:.0f} MB, {sampler.last_threads} threads); "
            f"CPU {cpu:.0f} s ({cpu / max(len(job_ids), 1) * 1000:.0f} ms per job; user {user:.0f} s, "
            f"system {system:.0f} s); "
            f"load average now {os.getloadavg()[0]:.1f}"
        )
        goals = {  # the burst's goals: every job accepted and completed, under 1 GB, threads bounded
            f"{args.jobs} x 202": codes[202] == args.jobs,
            f"{args.jobs} completed": statuses["completed"] == args.jobs,
            "0 connection errors": not errors,
            f"peak RSS under {args.goal_rss_mb:.0f} MB": sampler.peak_rss_mb < args.goal_rss_mb
            and not sampler.over_limit.is_set(),
            f"peak threads under {args.goal_threads}": sampler.peak_threads < args.goal_threads,
        }
        ok = all(goals.values())
        print("; ".join(f"{goal}: {'met' if met else 'MISSED'}" for goal, met in goals.items()))
        print("OK" if ok else "NOT OK")
    finally:
        sampler.stop()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        lines = Path(log.name).read_text().splitlines()
        errors_logged = sum(" ERROR " in line or "Traceback" in line for line in lines)
        print(f"server log: {log.name} ({errors_logged} error lines)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
