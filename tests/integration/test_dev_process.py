"""`make dev`'s process: stops promptly on SIGTERM, and never outlives a killed `make`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from local.emulator import free_port

ROOT = Path(__file__).resolve().parents[2]


def dev_env() -> tuple[dict[str, str], int]:
    port = free_port()
    env = os.environ | {"PORT": str(port), "EMULATOR_PORT": str(free_port())}
    env.pop("REPLICATE_API_TOKEN", None)
    return env, port


def wait_answering(url: str, timeout: float = 60, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(interval)
    raise AssertionError(f"local.dev did not answer {url}")


def wait_healthy(port: int) -> None:
    wait_answering(f"http://127.0.0.1:{port}/health")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_sigterm_stops_the_dev_server() -> None:
    env, port = dev_env()
    server = subprocess.Popen([sys.executable, "-m", "local.dev"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_healthy(port)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0  # was 18 s: pollers and workflow threads held the exit
    finally:
        server.kill()


def test_the_dev_server_does_not_outlive_its_parent() -> None:
    env, port = dev_env()
    parent = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} -m local.dev >/dev/null & echo $!; wait"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout
    child = int(parent.stdout.readline())
    try:
        wait_healthy(port)
        parent.kill()  # like killing make: the child gets no signal
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_token_in_dot_env_switches_make_dev_to_replicate_and_it_says_so(tmp_path) -> None:
    """The old service's `cp env.example .env`: a token there (not in the environment) runs the
    real-provider path, and the start-up banner names the mode and the file it read. Ctrl-C stops it."""
    env, port = dev_env()
    env["PYTHONPATH"] = str(ROOT)
    (tmp_path / ".env").write_text("REPLICATE_API_TOKEN=r8_from_dot_env\nREPLICATE_BASE_URL=http://127.0.0.1:9\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "local.dev"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_healthy(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert b'"mode":"replicate"' in answer.read().replace(b" ", b"")
        server.send_signal(signal.SIGINT)
        started = time.monotonic()
        banner, _ = server.communicate(timeout=10)
        assert server.returncode == 0 and time.monotonic() - started < 5  # about 1 s here
    finally:
        server.kill()
    assert "generation on Replicate" in banner, banner
    assert str(tmp_path / ".env") in banner or ".env" in banner.split("Settings", 1)[1].splitlines()[0], banner
    assert "r8_from_dot_env" not in banner  # the token itself is never printed


def test_ctrl_c_while_starting_stops_it() -> None:
    """A Ctrl-C that lands during start-up (here: once the emulated AWS answers, before the API
    does) stops the process promptly instead of leaving its server threads holding it open."""
    env, _ = dev_env()
    aws_port = int(env["EMULATOR_PORT"])
    server = subprocess.Popen(
        [sys.executable, "-m", "local.dev", "--no-dotenv"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_answering(f"http://127.0.0.1:{aws_port}/moto-api/", interval=0.05)
        server.send_signal(signal.SIGINT)
        _, log = server.communicate(timeout=20)
        assert server.returncode == 0 and b"Traceback" not in log, log.decode()[-2000:]
    finally:
        server.kill()
