"""SIGINT and SIGTERM stop a job between batches, never in the middle of one."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path


class JobInterrupted(Exception):
    """SIGINT or SIGTERM arrived; finished shards are kept and --resume completes the store."""

    def __init__(self, signum: int, path: Path):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}; the shards written so far "
                         f"are kept: rerun with --resume to finish {path}")


@contextlib.contextmanager
def stop_on_signals():
    """Collect SIGINT/SIGTERM into a list instead of dying mid-batch (main thread only)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
