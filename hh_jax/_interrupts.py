"""Interrupts of long runs: SIGTERM raises KeyboardInterrupt while a fit runs, so a job
killed by a scheduler checkpoints exactly like one stopped by Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def interrupts_raise():
    """While inside, SIGTERM raises KeyboardInterrupt (main thread only; elsewhere signals
    cannot be handled and nothing changes); the previous handler is put back on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
