"""One writer per store: an exclusive flock on a file inside the store folder.

The kernel drops the lock when its process dies, however it dies, so a lock file whose lock is
free was left by a job that did not finish: that is a stale lock, and we take it over. flock
needs a local filesystem or one whose locks span clients (NFSv4, Lustre with flock enabled).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".tts_extract.lock"
# what flock raises where the filesystem has no locks (Lustre without -o flock, NFS without lockd)
NO_LOCKS = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)
READERS_WAIT_S = 1.0    # how long a starting job waits out readers' momentary shared locks


class StoreLockedError(RuntimeError):
    """Another job holds the store."""


class LockingUnsupportedError(RuntimeError):
    """The store's filesystem cannot lock files."""


class StoreLock:
    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        self.file = None
        self.stale_owner: dict | None = None   # the previous, dead holder, if any

    def acquire(self) -> StoreLock:
        """Take the lock or raise `StoreLockedError` naming the job that holds it
        (`LockingUnsupportedError` where the filesystem has no locks)."""
        file = open(self.path, "a+")
        try:
            _lock_exclusive(file)
        except BlockingIOError:
            owner = _describe(_read_owner(file))
            file.close()
            raise StoreLockedError(f"{self.path.parent} is being written by another "
                                   f"tts-extract job ({owner}); wait for it to finish or "
                                   "stop it") from None
        except OSError as e:
            file.close()
            if e.errno not in NO_LOCKS:
                raise
            raise LockingUnsupportedError(
                f"cannot lock {self.path}: its filesystem does not support flock ({e.strerror}), "
                "which keeps two jobs from writing one store; write the store where it does (a "
                "local disk, NFSv4, Lustre mounted with -o flock)") from e
        self.stale_owner = _read_owner(file)
        file.seek(0)
        file.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, file)
        file.flush()
        self.file = file
        return self

    def release(self) -> None:
        if self.file is not None:
            self.file.seek(0)
            self.file.truncate()
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def running_owner(folder: Path) -> str | None:
    """The job writing the store in `folder` now ("pid N on HOST, started T"), or None when
    no job holds its lock (it finished, or was killed) or its filesystem has no locks, where no
    job could have taken it. Creates nothing; holds a shared lock for an instant, which a job
    starting in that instant waits out (`READERS_WAIT_S`)."""
    try:
        file = open(folder / LOCK_NAME)
    except OSError:
        return None
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(_read_owner(file))
        except OSError as e:
            if e.errno in NO_LOCKS:
                return None
            raise
        fcntl.flock(file, fcntl.LOCK_UN)
    return None


def _lock_exclusive(file) -> None:
    """flock LOCK_EX, retrying for up to READERS_WAIT_S while only readers (shared locks) are in
    the way; BlockingIOError at once when a job holds it."""
    deadline = time.monotonic() + READERS_WAIT_S
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline or not _held_only_shared(file):
                raise
            time.sleep(0.01)


def _held_only_shared(file) -> bool:
    """Whether a shared lock can be had now, that is, no exclusive holder (taken and dropped)."""
    try:
        fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(file, fcntl.LOCK_UN)
    return True


def _read_owner(file) -> dict | None:
    file.seek(0)
    try:
        owner = json.loads(file.read() or "null")
    except json.JSONDecodeError:
        return None
    return owner if isinstance(owner, dict) else None


def _describe(owner: dict | None) -> str:
    if not owner:
        return "owner unknown"
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}"
