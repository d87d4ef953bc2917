"""The embedded AWS emulation and the Replicate test double (never shipped in a Lambda bundle)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

STOP_WITHIN_SECONDS = 1.5  # state is in memory only: nothing is lost by not waiting longer


def serve_until_stopped(*cleanups: Callable[[], None]) -> None:
    """Block until Ctrl-C, SIGTERM or the death of the parent process (`make` killed), then run
    `cleanups` in order and exit the process, within STOP_WITHIN_SECONDS even if one of them hangs
    (workflow executions still running are threads that would otherwise hold the exit)."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGHUP, lambda *_: stopped.set())
    parent = os.getppid()
    try:
        while not stopped.wait(0.2) and os.getppid() == parent:
            pass
    except KeyboardInterrupt:
        pass
    finally:

        def run() -> None:
            for cleanup in cleanups:
                cleanup()

        worker = threading.Thread(target=run, name="cleanup", daemon=True)
        worker.start()
        worker.join(STOP_WITHIN_SECONDS)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
