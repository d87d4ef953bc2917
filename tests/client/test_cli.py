"""The `mediagen` command against the emulation: in a real pseudo-terminal, on a pipe, with --json."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from local.emulator import free_port
from shared.errors import PermanentError
from tests.conftest import submit, unique_prompt, wait_until_done
from tests.integration.test_client_webhooks import hooks, receivers, settled  # noqa: F401  (fixtures)
from tests.integration.test_idempotency import jobs_with_prompt
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


def one_line(done: subprocess.CompletedProcess) -> str:
    """The error line of a command that failed the way every error should: one line, no traceback."""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_without_its_extra_the_command_says_what_to_install(tmp_path):
    """`pip install ./client` gives the `mediagen` script but not rich: one line, exit 2."""
    without_rich = "import sys; sys.modules['rich'] = None; from mediagen.cli import entry; entry()"
    for args in (["stats"], ["generate", "x", "--json"], ["--help"]):
        done = subprocess.run(
            [sys.executable, "-c", without_rich, *args],
            env=env(f"http://127.0.0.1:{free_port()}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert one_line(done) == "mediagen: the command line needs its extra: pip install 'mediagen[cli]'\n"
        assert done.stdout == ""


def test_an_out_that_is_a_file_is_refused_before_anything_is_submitted(emulator, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    prompt = unique_prompt("out is a file")
    generate = run(emulator.gateway.url, "generate", prompt, "--out", str(taken))
    download = run(emulator.gateway.url, "download", str(uuid.uuid4()), "--out", str(taken))

    for done in (generate, download):
        assert done.returncode == 2
        assert one_line(done) == f"mediagen: error: --out {taken}: exists and is not a directory\n"
    assert jobs_with_prompt(prompt) == []
    assert taken.read_text() == "not a directory"


def test_an_out_that_cannot_be_made_says_how_to_download_the_completed_job(emulator, tmp_path):
    (tmp_path / "file").write_text("")
    beneath = tmp_path / "file" / "images"  # its parent is a file: only the mkdir finds out
    url = emulator.gateway.url
    on_a_pipe = run(url, "generate", unique_prompt("out below a file"), "--out", str(beneath))
    as_json = run(url, "generate", unique_prompt("out below a file"), "--out", str(beneath), "--json")

    assert (on_a_pipe.returncode, as_json.returncode) == (2, 2)
    # On a pipe the status lines come first (stderr): the error is the last line, the only one of its kind.
    *status_lines, error = on_a_pipe.stderr.splitlines()
    assert "Traceback" not in on_a_pipe.stderr and not any("error" in line for line in status_lines)
    for line in (error, one_line(as_json)):
        [job_id] = re.findall(r"mediagen download ([0-9a-f-]{36}) --out DIR", line)
        assert line.startswith(f"mediagen: error: {beneath}: Not a directory (job {job_id} completed: ")
    assert "mediagen download" in json.loads(as_json.stdout)["error"]
    again = run(url, "download", job_id, "--out", str(tmp_path / "images"))
    assert again.returncode == 0 and Path(again.stdout.strip()).name == f"{job_id}_0.png"


class FakeService:
    """A local HTTP server that answers scripted paths; any other request hangs until the test ends,
    like a service that accepted the connection and never answered."""

    def __init__(self, answers: dict[str, tuple[int, str, bytes]]) -> None:
        self.answers, self.paths, self.release = answers, [], threading.Event()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                service.paths.append(path)
                if path not in service.answers:
                    service.release.wait(60)
                    return
                status, content_type, body = service.answers[path]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, path: str) -> None:
        deadline = time.monotonic() + 30
        while path not in self.paths and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path in self.paths, self.paths

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_service():
    made: list[FakeService] = []

    def make(answers: dict[str, tuple[int, str, bytes]] | None = None) -> FakeService:
        made.append(FakeService(answers or {}))
        return made[-1]

    yield make
    for service in made:
        service.close()


def test_an_answer_that_is_not_the_services_exits_3(fake_service, tmp_path):
    html = (200, "text/html", b"<html>a login page</html>")
    service = fake_service(
        {"/api/v1/stats": html, "/api/v1/generate": html, "/api/v1/models": (200, "application/json", b"{}")}
    )
    stats = run(service.url, "stats")
    generate = run(service.url, "generate", "x", "--out", str(tmp_path))
    models = run(service.url, "models", "--json")

    assert (stats.returncode, generate.returncode, models.returncode) == (3, 3, 3)
    assert (
        one_line(stats)
        == f"mediagen: error: unexpected response from {service.url}/api/v1/stats: HTTP 200 text/html, not JSON\n"
    )
    assert f"unexpected response from {service.url}/api/v1/generate" in one_line(generate)
    assert (
        one_line(models) == f"mediagen: error: unexpected response from {service.url}/api/v1/models: not a ModelList\n"
    )
    assert "not a ModelList" in json.loads(models.stdout)["error"]


@pytest.mark.parametrize("url", ["http://[bad", "ftp://example.com", "localhost:8000"])
def test_a_url_that_cannot_work_is_a_usage_error(url):
    given = subprocess.run(
        command("stats", "--url", url),
        env=env(f"http://127.0.0.1:{free_port()}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    from_env = run(url, "jobs")

    for done in (given, from_env):
        assert done.returncode == 2
        assert one_line(done).startswith(f"mediagen: error: invalid service URL {url!r}")


def interrupted(service: FakeService, path: str, *args: str) -> subprocess.CompletedProcess:
    """Run the command against `service`, and Ctrl-C it once its request for `path` is waiting."""
    process = subprocess.Popen(
        at_a_terminal(command(*args)),
        env=env(service.url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    service.wait_for(path)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_ctrl_c_while_submitting_or_reading_is_one_line_and_130(fake_service, tmp_path):
    service = fake_service()
    submitting = interrupted(service, "/api/v1/generate", "generate", "x", "--out", str(tmp_path))
    listing = interrupted(service, "/api/v1/jobs", "jobs", "--json")

    assert (submitting.returncode, listing.returncode) == (130, 130)
    assert one_line(submitting) == (
        "mediagen: error: interrupted while submitting: the job may be accepted (mediagen jobs)\n"
    )
    assert one_line(listing) == "mediagen: error: interrupted\n"
    assert json.loads(listing.stdout) == {"error": "interrupted"}


def test_ctrl_c_while_downloading_is_one_line_and_130(api, fake_service, tmp_path):
    """The job's detail is the real one, but its file is served by something that never answers."""
    job_id = submit(api, unique_prompt("ctrl-c download"))
    detail = wait_until_done(api, job_id)
    service = fake_service()
    detail["outputs"][0]["url"] = f"{service.url}/bucket/{job_id}_0.png"
    service.answers[f"/api/v1/jobs/{job_id}"] = (200, "application/json", json.dumps(detail).encode())

    done = interrupted(service, f"/bucket/{job_id}_0.png", "download", job_id, "--out", str(tmp_path))

    assert done.returncode == 130
    assert one_line(done) == (
        f"mediagen: error: interrupted while downloading (job {job_id} completed: "
        f"mediagen download {job_id} --out DIR)\n"
    )
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_generate_with_a_webhook_and_the_events_it_wants(emulator, api, hooks, tmp_path):  # noqa: F811
    receiver = hooks()
    done = run(
        emulator.gateway.url,
        "generate",
        unique_prompt("cli webhook"),
        "--webhook",
        receiver.url,
        "--webhook-event",
        "job.processing",
        "--webhook-event",
        "job.completed",
        "--json",
        "--out",
        str(tmp_path),
    )

    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)["job"]
    assert job["request"]["webhook"] == receiver.url
    assert job["request"]["webhook_events"] == ["job.processing", "job.completed"]
    deliveries = settled(api, job["job_id"], count=2)
    assert sorted(d["event"] for d in deliveries) == ["job.completed", "job.processing"]
    assert sorted(r["body"]["type"] for r in receiver.verified()) == ["job.completed", "job.processing"]

    unknown = run(emulator.gateway.url, "generate", "x", "--webhook", receiver.url, "--webhook-event", "job.nope")
    assert unknown.returncode == 2 and "job.nope" in unknown.stderr
