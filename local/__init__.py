"""The embedded AWS emulation and the Replicate test double (never shipped in a Lambda bundle)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

STOP_WITHIN_SECONDS = 1.5  # state is in memory only: nothing is lost by not waiting longer


def catch_stop_signals() -> threading.Event:
    """From now on, Ctrl-C, SIGTERM and SIGHUP set the returned event instead of raising: one that
    lands while the service is still starting stops it once started, rather than interrupting
    start-up halfway and leaving server threads that hold the process open. A second one forces
    the exit at once (a start-up that hangs)."""
    stopped = threading.Event()

    def on_signal(*_: object) -> None:
        if stopped.is_set():
            os._exit(130)
        stopped.set()

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, on_signal)
    return stopped


def serve_until_stopped(stopped: threading.Event, *cleanups: Callable[[], None]) -> None:
    """Block until `stopped` (see catch_stop_signals) or the death of the parent process (`make`
    killed), then run `cleanups` in order and exit the process, within STOP_WITHIN_SECONDS even if
    one of them hangs (workflow executions still running are threads that would otherwise hold the
    exit)."""
    parent = os.getppid()
    while not stopped.wait(0.2) and os.getppid() == parent:
        pass

    def run() -> None:
        for cleanup in cleanups:
            cleanup()

    worker = threading.Thread(target=run, name="cleanup", daemon=True)
    worker.start()
    worker.join(STOP_WITHIN_SECONDS)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
