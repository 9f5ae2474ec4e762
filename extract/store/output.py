"""Claiming the output folder for a job: refuse anything that is not a tts-extract store (or
empty), take the job lock, and clear the folder only when asked to overwrite."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from extract.progress import format_bytes
from extract.store.layout import ATTRS_KEY, marked_shards
from extract.store.lock import LOCK_NAME, LockingUnsupportedError, StoreLock, StoreLockedError


class StoreError(RuntimeError):
    """The output store cannot be created or written."""


def _attributes(path: Path) -> dict | None:
    """The attributes in the zarr.json of the folder `path` ({} where it has none), or None
    where there is no such file or it is not a JSON object."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attributes = meta.get("attributes", {}) if isinstance(meta, dict) else None
    return attributes if isinstance(attributes, dict) else None


def _holds_nothing(path: Path, attributes: dict | None) -> bool:
    """Whether the folder holds nothing but our lock file and perhaps the bare zarr.json (its
    `attributes` empty) of a group a job was killed as it began creating."""
    return all(p.name == LOCK_NAME or (p.name == "zarr.json" and attributes == {})
               for p in path.iterdir())


def _nothing_to_resume(path: Path, record: dict) -> bool:
    """Whether our unfinished store (`record`: its attribute) holds no finished shard (a job
    stopped before finishing any, or while creating the store): starting it over loses
    nothing."""
    return not (record.get("complete") or record.get("compacting") or marked_shards(path))


def open_output(path: Path, overwrite: bool, resume: bool,
                show_progress: bool = False) -> tuple[StoreLock, bool]:
    """Lock the output folder for this job; return the lock and whether there is an unfinished
    store to resume (one with finished shards: one without is started over, as nothing is
    lost). Refuses an existing output without --resume or --overwrite, and never deletes
    anything but a tts-extract store (or an empty folder); says so before deleting work
    (`show_progress`), which for a large store takes a while."""
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} exists and is not a folder; name a new folder for the store")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create output folder {path}: {e.strerror or e}") from e
    attributes = _attributes(path)
    ours = ATTRS_KEY in (attributes or {})
    record = attributes[ATTRS_KEY] if ours and isinstance(attributes[ATTRS_KEY], dict) else {}
    empty = not ours and _holds_nothing(path, attributes)
    if not (ours or empty):
        raise StoreError(f"{path} exists and is not a tts-extract store; refusing to touch it")
    if ours and not (resume or overwrite):
        if record.get("complete"):
            raise StoreError(f"{path} already holds a finished store; pass --overwrite to "
                             "replace it, or name another output")
        raise StoreError(f"{path} holds an unfinished store; pass --resume to finish it "
                         "(keeping its finished shards) or --overwrite to start again")
    try:
        lock = StoreLock(path).acquire()
    except (StoreLockedError, LockingUnsupportedError) as e:
        raise StoreError(str(e)) from None
    except OSError as e:
        raise StoreError(f"cannot write to {path}: {e.strerror or e}") from e
    holds_work = ours and not _nothing_to_resume(path, record)     # empty: none
    if overwrite or not holds_work:
        if show_progress and holds_work:
            print(f"--overwrite: deleting the {'' if record.get('complete') else 'un'}finished "
                  f"store in {path}", file=sys.stderr)
        for child in path.iterdir():
            if child.name != LOCK_NAME:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        return lock, False
    return lock, ours


def disk_space_note(path: Path, needed: int) -> str | None:
    """A note when the filesystem of the folder `path` has less than `needed` bytes free."""
    free = shutil.disk_usage(path).free
    if free >= needed:
        return None
    return (f"note: the store needs about {format_bytes(needed)} more, and the filesystem of "
            f"{path} has {format_bytes(free)} free: the job will stop when the disk is full "
            "(finished shards are kept: free some space, then rerun with --resume)")
