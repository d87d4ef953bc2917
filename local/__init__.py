"""The embedded AWS emulation and the Replicate test double (never shipped in a Lambda bundle)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def serve_until_stopped(*cleanups: Callable[[], None]) -> None:
    """Block until Ctrl-C or SIGTERM, then run `cleanups` in order."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for cleanup in cleanups:
            cleanup()
