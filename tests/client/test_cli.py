"""The `mediagen` command against the emulation: in a real pseudo-terminal, on a pipe, with --json."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from local.emulator import free_port
from shared.errors import PermanentError
from tests.conftest import unique_prompt
from tests.integration.test_replicate import double, provider  # noqa: F401  (fixtures)

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mediagen.cli", *args]


def at_a_terminal(argv: list[str]) -> list[str]:
    """`argv` with SIGINT at its default, as a shell at a terminal starts a command: run in the
    background (CI), the tests would otherwise pass on an ignored SIGINT, and Ctrl-C would do nothing."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *argv]


def env(url: str) -> dict[str, str]:
    return {**os.environ, "MEDIAGEN_URL": url, "TERM": "xterm-256color", "COLUMNS": "120"}


def run(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), env=env(url), capture_output=True, text=True, timeout=60)


def run_in_terminal(url: str, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; everything it drew, as written."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    process = subprocess.Popen(command(*args), env=env(url), stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=10), output.decode(errors="replace")


def test_generate_in_a_terminal_draws_a_rising_bar_then_prints_the_paths(emulator, configure, tmp_path):
    configure(MOCK_GENERATION_SECONDS="3")
    code, screen = run_in_terminal(
        emulator.gateway.url,
        "generate",
        unique_prompt("tty"),
        "--width",
        "256",
        "--height",
        "256",
        "--out",
        str(tmp_path),
    )

    assert code == 0, screen
    assert "\x1b[" in screen, "a live display uses terminal control sequences"
    frames = [ANSI.sub("", f) for f in re.split(r"\r|\x1b\[2K|\x1b\[1A", screen)]
    percents = [int(m) for f in frames for m in re.findall(r"(\d+)%", f)]
    assert percents == sorted(percents) and percents[-1] == 100 and len(set(percents)) >= 3, percents
    assert any("processing" in f for f in frames) and any("completed" in f for f in frames)
    [image] = list(tmp_path.iterdir())
    assert str(image) in ANSI.sub("", screen).replace("\r\n", "\n")
    assert Image.open(image).format == "PNG"


def test_on_a_pipe_there_is_no_bar_and_no_control_character(emulator, tmp_path):
    done = run(emulator.gateway.url, "generate", unique_prompt("pipe"), "--out", str(tmp_path))

    assert done.returncode == 0, done.stderr
    assert not CONTROL.search(done.stdout) and not CONTROL.search(done.stderr)
    [path] = done.stdout.split()
    assert Path(path).name.endswith("_0.png") and Path(path).exists()
    assert "completed 100%" in done.stderr


def test_json_output_and_exit_code_of_a_failed_job(emulator, faults, tmp_path):
    prompt = unique_prompt("cli fail")
    faults.script(prompt, PermanentError("scripted"))

    done = run(emulator.gateway.url, "generate", prompt, "--json", "--out", str(tmp_path))

    assert done.returncode == 1
    answer = json.loads(done.stdout)
    assert answer["job"]["status"] == "failed" and answer["job"]["error"]["code"] == "GENERATION_FAILED"
    assert answer["files"] == []
    job_id = answer["job"]["job_id"]

    status = run(emulator.gateway.url, "status", job_id, "--json")
    assert status.returncode == 1 and json.loads(status.stdout)["status"] == "failed"
    retried = run(emulator.gateway.url, "retry", job_id, "--json", "--out", str(tmp_path))
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["files"] == [str(tmp_path / f"{job_id}_0.png")]


def test_every_command_speaks_json(emulator):
    url = emulator.gateway.url
    job = json.loads(run(url, "generate", unique_prompt("json"), "--json", "--out", "/tmp").stdout)["job"]
    for args in (["jobs", "--status", "completed"], ["models"], ["stats"], ["watch", job["job_id"]]):
        done = run(url, *args, "--json")
        assert done.returncode == 0, (args, done.stderr)
        json.loads(done.stdout)
    jobs = run(url, "jobs")
    assert job["job_id"] in jobs.stdout and not CONTROL.search(jobs.stdout)


def test_errors_are_one_line_with_their_exit_code(emulator):
    url = emulator.gateway.url
    invalid = run(url, "generate", "x", "--width", "4000")
    missing = run(url, "status", str(uuid.uuid4()))
    unreachable = run(f"http://127.0.0.1:{free_port()}", "stats")
    usage = run(url, "generate")

    assert (invalid.returncode, missing.returncode, unreachable.returncode, usage.returncode) == (2, 1, 3, 2)
    for done in (invalid, missing, unreachable):
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "parameters.width" in invalid.stderr and "JOB_NOT_FOUND" in missing.stderr


@pytest.mark.parametrize("answer, status, code", [("y", "cancelled", 1), ("n", "processing", 130)])
def test_ctrl_c_asks_whether_to_cancel(emulator, configure, answer, status, code):
    configure(MOCK_GENERATION_SECONDS="20")
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        at_a_terminal(command("generate", unique_prompt("ctrl-c"), "--out", "/tmp")),
        env=env(emulator.gateway.url),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    screen = b""

    def read_until(text: bytes) -> None:
        nonlocal screen
        deadline = time.monotonic() + 30
        while text not in screen and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    screen += os.read(leader, 65536)
                except OSError:  # EIO: the command exited and closed the terminal
                    break
        assert text in screen, (screen, process.poll())

    read_until(b"processing")
    os.killpg(process.pid, 2)
    read_until(b"[y/N]")
    os.write(leader, answer.encode() + b"\n")
    assert process.wait(timeout=30) == code
    job_id = re.search(rb"Cancel job ([0-9a-f-]{36})", screen).group(1).decode()
    os.close(leader)
    assert json.loads(run(emulator.gateway.url, "status", job_id, "--json").stdout)["status"] == status


def test_generate_on_the_replicate_double_with_webhooks(emulator, provider, tmp_path):  # noqa: F811
    provider("webhook")
    done = run(
        emulator.gateway.url,
        "generate",
        unique_prompt("cli replicate"),
        "--model",
        "black-forest-labs/flux-schnell",
        "--width",
        "512",
        "--height",
        "512",
        "--out",
        str(tmp_path),
        "--json",
    )

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["job"]["status"] == "completed" and answer["job"]["model"] == "black-forest-labs/flux-schnell"
    [path] = answer["files"]
    assert Path(path).name == f"{answer['job']['job_id']}_0.webp" and Image.open(path).format == "WEBP"


def test_global_options_go_before_or_after_the_command(emulator):
    url = emulator.gateway.url
    elsewhere = {**env(f"http://127.0.0.1:{free_port()}")}  # MEDIAGEN_URL points nowhere
    for args in (["--url", url, "--json", "stats"], ["stats", "--url", url, "--json"]):
        done = subprocess.run(command(*args), env=elsewhere, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (args, done.stderr)
        assert "by_status" in json.loads(done.stdout)
