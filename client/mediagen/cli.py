"""`mediagen`: submit, follow with a progress bar, download. `--json` for scripts.

Exit codes: 0 done, 1 job failed or cancelled (or refused: not found, conflict), 2 usage or
invalid input (a bad URL, an --out that cannot be written), 3 service unreachable, authentication
refused or an answer that is not the service's, 130 interrupted. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from mediagen import errors
from mediagen.client import Client, Job
from mediagen.models import JobStatus, WebhookEvent

OK, JOB_FAILED, USAGE, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 130
NEEDS_EXTRA = "mediagen: the command line needs its extra: pip install 'mediagen[cli]'"


class Failure(Exception):
    """Ends the command with `code` and this one-line message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _local(exc: OSError) -> str:
    """An OSError on a local file, as one line that names the path."""
    return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return {k: _plain(v) for k, v in asdict(value).items() if k != "raw"}
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Output:
    """Where things go: a bar and tables on a terminal, plain lines on a pipe, JSON with --json."""

    def __init__(self, as_json: bool) -> None:
        from rich.console import Console

        self.json = as_json
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    def data(self, value: Any) -> None:
        print(json.dumps(_plain(value), indent=None if not self.out.is_terminal else 2))

    def table(self, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        """A table on a terminal; tab-separated lines (easy to cut and grep) on a pipe."""
        if not self.out.is_terminal:
            for row in (header, *rows):
                print("\t".join(row))
            return
        from rich.table import Table

        table = Table(*header)
        for row in rows:
            table.add_row(*row)
        self.out.print(table)

    def line(self, text: str) -> None:
        self.out.print(text, markup=False, soft_wrap=True)


def _describe(job: Job) -> str:
    if job.status == JobStatus.PENDING and job.queue_position is not None:
        return f"queued (position {job.queue_position})"
    return job.status.value


def follow(client: Client, job: Job, out: Output) -> Job:
    """Wait for the job with a live bar (terminal), status lines (pipe) or nothing (--json).
    Ctrl-C asks whether to cancel it."""
    try:
        if out.json:
            return job.wait()
        if not out.err.is_terminal:
            return job.wait(on_update=lambda j: print(f"{j.id} {_describe(j)} {j.progress}%", file=sys.stderr))
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("{task.fields[job]}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        with Progress(*columns, console=out.err, transient=False) as bar:
            task = bar.add_task(_describe(job), total=100, job=job.id[:8])

            def update(j: Job) -> None:
                bar.update(task, completed=j.progress, description=_describe(j))

            job = job.wait(on_update=update)
            update(job)
        return job
    except KeyboardInterrupt:
        return _interrupted(job, out)


def _interrupted(job: Job, out: Output) -> Job:
    answer = ""
    if sys.stdin.isatty() and not out.json:
        try:
            answer = input(f"\nCancel job {job.id}? [y/N] ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            answer = ""
    if answer in ("y", "yes"):
        job.cancel()
        out.err.print(f"Cancelled {job.id}", markup=False)
        raise SystemExit(JOB_FAILED)
    out.err.print(f"Job {job.id} keeps running: mediagen watch {job.id}", markup=False)
    raise SystemExit(INTERRUPTED)


def _finish(client: Client, job: Job, out: Output, directory: str | None) -> int:
    paths = _download(job, directory) if directory is not None and job.status == JobStatus.COMPLETED else []
    if out.json:
        out.data({"job": job.data, "files": paths})
    else:
        if job.error:
            out.err.print(f"{job.id} {job.status.value}: {job.error.code}: {job.error.message}", markup=False)
        for path in paths:
            out.line(path)
    return OK if job.status == JobStatus.COMPLETED else JOB_FAILED


def _download(job: Job, directory: str) -> list[str]:
    """The job's files in `directory`; a failure says how to try again (the job stays completed)."""
    again = f"job {job.id} completed: mediagen download {job.id} --out DIR"
    try:
        return [str(p) for p in job.download(directory)]
    except OSError as exc:
        raise Failure(USAGE, f"{_local(exc)} ({again})") from None
    except KeyboardInterrupt:
        raise Failure(INTERRUPTED, f"interrupted while downloading ({again})") from None


def _check_out(directory: str | None) -> None:
    """An --out that cannot be a directory is refused before anything is submitted."""
    if directory is not None and Path(directory).exists() and not Path(directory).is_dir():
        raise Failure(USAGE, f"--out {directory}: exists and is not a directory")


# ---- commands ------------------------------------------------------------------------------------
def cmd_generate(client: Client, args: argparse.Namespace, out: Output) -> int:
    names = ("width", "height", "num_inference_steps", "guidance_scale", "negative_prompt", "num_outputs", "seed")
    parameters = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    try:
        job = client.generate(
            args.prompt,
            model=args.model,
            wait=False,
            webhook=args.webhook,
            webhook_events=args.webhook_events,
            **parameters,
        )
    except KeyboardInterrupt:
        raise Failure(INTERRUPTED, "interrupted while submitting: the job may be accepted (mediagen jobs)") from None
    if not out.json and not out.err.is_terminal:
        print(f"{job.id} accepted", file=sys.stderr)
    return _finish(client, follow(client, job, out), out, args.out)


def cmd_status(client: Client, args: argparse.Namespace, out: Output) -> int:
    job = client.job(args.job_id)
    if out.json:
        out.data(job.data)
    else:
        out.line(f"{job.id} {job.status.value} {job.progress}% attempt {job.attempt}")
        if job.error:
            out.line(f"error: {job.error.code}: {job.error.message}")
        for o in job.outputs:
            out.line(f"output {o.index}: {o.content_type} {o.width}x{o.height} {o.size_bytes} bytes")
    return OK if job.status != JobStatus.FAILED and job.status != JobStatus.CANCELLED else JOB_FAILED


def cmd_watch(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _finish(client, follow(client, client.job(args.job_id), out), out, None)


def cmd_download(client: Client, args: argparse.Namespace, out: Output) -> int:
    job = client.job(args.job_id)
    if job.status != JobStatus.COMPLETED:
        raise errors.Conflict(409, "INVALID_STATE", f"job {job.id} is {job.status.value}: nothing to download")
    return _finish(client, job, out, args.out)


def cmd_jobs(client: Client, args: argparse.Namespace, out: Output) -> int:
    jobs = list(client.jobs.list(status=args.status))
    if out.json:
        out.data(jobs)
        return OK
    rows = [
        (
            j.job_id,
            j.status.value,
            f"{j.progress}%",
            str(j.attempt),
            j.created_at.isoformat(timespec="seconds"),
            j.prompt,
        )
        for j in jobs
    ]
    out.table(("job id", "status", "progress", "attempt", "created", "prompt"), rows)
    return OK


def cmd_cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    job = client.job(args.job_id).cancel()
    out.data(job.data) if out.json else out.line(f"{job.id} {job.status.value}")
    return OK


def cmd_retry(client: Client, args: argparse.Namespace, out: Output) -> int:
    job = client.job(args.job_id).retry()
    if args.no_wait:
        out.data(job.data) if out.json else out.line(f"{job.id} attempt {job.attempt} {job.status.value}")
        return OK
    return _finish(client, follow(client, job, out), out, args.out)


def cmd_models(client: Client, args: argparse.Namespace, out: Output) -> int:
    models = client.models()
    if out.json:
        out.data(models)
        return OK
    out.line(f"default: {models.default or 'mock generation'}")
    out.table(
        ("model", "version", "parameters"), [(m.name, m.version or "", ", ".join(m.parameters)) for m in models.models]
    )
    return OK


def cmd_stats(client: Client, args: argparse.Namespace, out: Output) -> int:
    stats = client.stats()
    if out.json:
        out.data(stats)
        return OK
    out.line(f"total {stats.total_jobs}")
    for status, count in stats.by_status.items():
        out.line(f"{status.value} {count}")
    if stats.success_rate is not None:
        out.line(f"success rate {stats.success_rate:.1%}")
    if stats.average_duration_seconds is not None:
        out.line(f"mean duration {stats.average_duration_seconds:.1f}s")
    if stats.cost.mean_usd is not None:
        mean = stats.cost.mean_usd
        out.line(f"mean cost ${mean.total:.6f} (provider ${mean.provider:.6f}, AWS ${mean.aws:.6f})")
    return OK


def _global_options(parser: argparse.ArgumentParser, **defaults: object) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output, no progress bar")
    parser.add_argument("--url", help="service URL (default: MEDIAGEN_URL, cdk-outputs.json, http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="API key (default: MEDIAGEN_API_KEY)")
    parser.set_defaults(**defaults)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="mediagen", description="Generate images with the media generation service.")
    _global_options(root)
    # The same options after the command (`mediagen --url U jobs` and `mediagen jobs --url U`). The
    # command's copies default to SUPPRESS: unset there, they leave what was given before it.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _global_options(common)
    sub = root.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", parents=[common], help="submit a prompt, follow it, download the images")
    gen.add_argument("prompt")
    gen.add_argument("--model")
    for name, kind in (
        ("width", int),
        ("height", int),
        ("steps", int),
        ("guidance", float),
        ("outputs", int),
        ("seed", int),
    ):
        gen.add_argument(f"--{name}", type=kind)
    gen.add_argument("--negative-prompt")
    gen.add_argument("--webhook", metavar="URL", help="an https URL the service sends the job's events to")
    gen.add_argument(
        "--webhook-event",
        dest="webhook_events",
        action="append",
        choices=[e.value for e in WebhookEvent],
        metavar="EVENT",
        help="an event for --webhook, repeatable: job.processing, job.progress, job.completed, job.failed, "
        "job.cancelled (default: the last three)",
    )
    gen.add_argument("--out", default=".", help="directory for the images (default: .)")
    gen.set_defaults(run=cmd_generate)

    for name, run, text in (
        ("status", cmd_status, "a job's status"),
        ("watch", cmd_watch, "follow a job until it ends"),
        ("cancel", cmd_cancel, "cancel a pending or processing job"),
        ("retry", cmd_retry, "run a failed or cancelled job again"),
        ("download", cmd_download, "download a completed job's images"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("job_id")
        if name in ("retry", "download"):
            p.add_argument("--out", default=".", help="directory for the images (default: .)")
        if name == "retry":
            p.add_argument("--no-wait", action="store_true")
        p.set_defaults(run=run)
    jobs = sub.add_parser("jobs", parents=[common], help="list jobs, newest first")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus])
    jobs.set_defaults(run=cmd_jobs)
    sub.add_parser("models", parents=[common], help="the models a request may name").set_defaults(run=cmd_models)
    sub.add_parser("stats", parents=[common], help="jobs per status").set_defaults(run=cmd_stats)
    return root


def _has_display() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    if not _has_display():  # `pip install ./client` without the [cli] extra
        print(NEEDS_EXTRA, file=sys.stderr)
        return USAGE
    args = parser().parse_args(argv)
    if args.command == "generate":
        args.num_inference_steps, args.guidance_scale = args.steps, args.guidance
        args.num_outputs = args.outputs
    try:
        out = Output(args.json)
        _check_out(getattr(args, "out", None))
        with Client(args.url, args.api_key) as client:
            code = args.run(client, args, out)
    except Failure as exc:
        code, message = exc.code, str(exc)
    except (errors.APIConnectionError, errors.AuthError, errors.UnexpectedResponse) as exc:
        code, message = UNREACHABLE, str(exc)
    except (errors.ValidationError, errors.ConfigurationError) as exc:
        code, message = USAGE, str(exc)
    except errors.MediagenError as exc:
        code, message = JOB_FAILED, str(exc)
    except OSError as exc:  # a local file: what --out names
        code, message = USAGE, _local(exc)
    except KeyboardInterrupt:  # outside the wait (which asks whether to cancel)
        code, message = INTERRUPTED, "interrupted"
    else:
        return code
    if args.json:
        print(json.dumps({"error": message}))
    print(f"mediagen: error: {message}", file=sys.stderr)
    return code


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
