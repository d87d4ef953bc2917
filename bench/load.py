"""`make load`: a burst of jobs against `make dev` (mock generation), with its figures.

Starts `python -m local.dev` on free ports, submits JOBS jobs from CLIENTS concurrent clients (one
connection per request, as curl scripts do), waits until every job ended, and prints: the status
codes of the submits, connection errors, jobs completed / failed / lost (404) / stuck, the drain
rate, and the server process's peak resident memory and thread count, sampled throughout.
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
from pathlib import Path

from local.emulator import free_port

TERMINAL = {"completed", "failed", "cancelled"}


class Sampler(threading.Thread):
    """Peak RSS and thread count of a process, from /proc, every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss_mb = 0.0
        self.peak_threads = 0
        self.last_rss_mb = 0.0
        self.last_threads = 0
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every job to end")
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
    sampler = Sampler(server.pid)
    try:
        wait_ready(port, server)
        sampler.start()
        rate = float(env.get("DISPATCH_RATE_PER_SECOND", "8"))
        print(f"{args.jobs} jobs from {args.clients} clients; mock generation; DISPATCH_RATE_PER_SECOND={rate:g}")

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

        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as clients:
            list(clients.map(submit, range(args.jobs)))
        submitted = time.monotonic() - started
        print(
            f"submitted in {submitted:.1f} s ({args.jobs / submitted:.0f}/s): "
            + ", ".join(f"{code} x {n}" for code, n in sorted(codes.items(), key=str))
        )

        # Watch the O(1) counters while the queue drains, then check every job once.
        deadline = time.monotonic() + args.timeout
        first_done = None
        while time.monotonic() < deadline:
            stats = call(port, "GET", "/api/v1/stats")[1]
            ended = sum(stats.get("by_status", stats).get(s, 0) for s in TERMINAL)
            if first_done is None and ended:
                first_done = time.monotonic()
            if ended >= len(job_ids):
                break
            time.sleep(0.5)
        drained = time.monotonic() - started
        statuses: Counter[str] = Counter()
        with ThreadPoolExecutor(args.clients) as clients:
            for status, body in clients.map(lambda j: call(port, "GET", f"/api/v1/status/{j}"), job_ids):
                statuses["lost" if status == 404 else body.get("status", str(status))] += 1
        stuck = sum(n for s, n in statuses.items() if s not in TERMINAL and s != "lost")
        errors = sum(n for code, n in codes.items() if isinstance(code, str))
        print(
            f"jobs: {dict(statuses)}; lost {statuses['lost']}, stuck {stuck}, connection errors {errors}\n"
            f"all ended {drained:.1f} s after the first submit: {len(job_ids) / drained:.1f} jobs/s "
            f"(dispatch rate {rate:g}/s)\n"
            f"server process: peak RSS {sampler.peak_rss_mb:.0f} MB, peak threads {sampler.peak_threads} "
            f"(at the end {sampler.last_rss_mb:.0f} MB, {sampler.last_threads} threads)"
        )
        ok = codes[202] == args.jobs and statuses["completed"] == args.jobs and not errors
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


if __name__ == "__main__":
    main()
