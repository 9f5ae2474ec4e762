"""Stream per-utterance features into one Zarr v3 store, writing whole shards only.

Frame offsets are fixed before extraction (from audio headers), so arrays are created once at
their final size. Results may arrive in any order; each is copied into the buffer of the shards
it overlaps, and a shard is written, whole and once, when all its frames have arrived, by a
background thread (so that writing overlaps the next batches' work; `wait` joins it). Then a
marker progress/NNNNNNNN.json (with the shard's statistics moments) is written atomically: a
rerun with --resume skips the marked shards whose files are whole and redoes the rest. The root
group is marked complete only by `finish()`, which also removes progress/.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr

from extract.features.stats import combine, shard_moments, valid_moments
from extract.progress import Progress
from extract.store.index import UtteranceIndex
from extract.store.layout import (ATTRS_KEY, CHUNK_FRAMES, FORMAT_VERSION, FRAME_ARRAYS,
                                  OFFSETS, OPTIONAL_FRAME_ARRAYS, PROGRESS, SHARD_FRAMES, SPANS,
                                  UTTERANCE_GROUP, frame_arrays, marked_shards, marker_file,
                                  utterance_fields)
from extract.store.output import StoreError
from extract.store.shard_file import shard_is_whole, write_shard

QUEUED_SHARDS = 4           # completed shards waiting for the writing thread, at most
CHECK_PROGRESS_DELAY_S = 1.0   # --resume's check of finished shards shows progress after this


_MISSING = object()


def differing_fields(a: object, b: object, name: str = "") -> list[str]:
    """Dotted names of the fields in which two nested dicts differ ("pitch.fmax"); [name] for
    differing values that are not both dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [field for key in sorted(a.keys() | b.keys())
                for field in differing_fields(a.get(key, _MISSING), b.get(key, _MISSING),
                                              f"{name}.{key}" if name else key)]
    return [] if a == b else [name or "config"]


class StoreWriter:
    """Writes the shards `owned` (default: all) of one store.

    mode "create" makes a new store; "resume" reopens an unfinished one made with the same
    index and attributes (config, manifest); "attach" opens the store another process of the
    same job created (`widths` and `attrs` unused). Marked shards count as written.
    show_progress: a progress line while "resume" checks the finished shards, if that takes
    more than CHECK_PROGRESS_DELAY_S (a large store on a network filesystem)."""

    def __init__(self, path: Path, index: UtteranceIndex, widths: dict[str, int], attrs: dict,
                 chunk_frames: int = CHUNK_FRAMES, shard_frames: int = SHARD_FRAMES,
                 mode: str = "create", owned: range | None = None,
                 show_progress: bool = False):
        self.path = path
        self.shard_frames = shard_frames
        self.index = index
        try:
            if mode == "create":
                self._create(widths, attrs, chunk_frames)
            else:
                self._reopen(mode, attrs, chunk_frames)
            if not self.complete:
                (path / PROGRESS).mkdir(exist_ok=True)
            # not mid-compaction: a compacted shard's old frames are gone, so it cannot be redone
            self.redone = (self._unmark_damaged_shards(show_progress)
                           if mode == "resume" and not self.compacting else [])
        except OSError as e:
            raise StoreError(f"cannot write {path}: {e.strerror or e}") from e
        done = marked_shards(self.path)
        self.buffers: dict[int, dict[str, np.ndarray]] = {}
        self._writing: ThreadPoolExecutor | None = None
        self._queued: deque[Future] = deque()
        owned = range(self.num_shards) if owned is None else owned
        self.missing = {s: self._shard_range(s)[1] - self._shard_range(s)[0]
                        for s in owned if s not in done}

    def _reopen(self, mode: str, attrs: dict, chunk_frames: int) -> None:
        """Open the existing store (checking, for "resume", that it is this job's); a store whose
        metadata is damaged is a StoreError that says so, not zarr's error."""
        try:
            self.group = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
            if mode == "resume":
                self._check_resumable(attrs, chunk_frames)
            self.arrays = {name: self.group[name] for name in
                           (*FRAME_ARRAYS, *OPTIONAL_FRAME_ARRAYS) if name in self.group}
        except (StoreError, OSError):
            raise
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:
            action = "resume" if mode == "resume" else "open"
            raise StoreError(f"cannot {action} {self.path}: it is damaged "
                             f"({type(e).__name__}: {e}); rerun with --overwrite to start "
                             "over") from e

    def _unmark_damaged_shards(self, show_progress: bool) -> list[int]:
        """Remove the markers of shards a machine crash may have left damaged (the kernel had
        not written every file to disk): a marker that is not whole (not JSON, or not moments
        of this store's shape), or a shard file that is missing or not whole
        (shard_file.shard_is_whole). Return those shards: they are redone."""
        row_bytes = {name: array.dtype.itemsize * int(np.prod(array.shape[1:]))
                     for name, array in self.arrays.items()}
        damaged = []
        marked = sorted(marked_shards(self.path))
        progress = Progress(len(marked), None, enabled=show_progress, unit="shards",
                            label="checking finished shards", delay_s=CHECK_PROGRESS_DELAY_S)
        for shard in marked:
            progress.update(1)
            marker = marker_file(self.path, shard)
            lo, hi = self._shard_range(shard)
            try:
                whole = valid_moments(json.loads(marker.read_text()), self.arrays["mel"].shape[1])
            except (json.JSONDecodeError, UnicodeDecodeError):
                whole = False
            whole = whole and all(
                shard_is_whole(self.path / name, shard, hi - lo, row_bytes[name], array.ndim,
                               array.chunks[0], self.shard_frames)
                for name, array in self.arrays.items())
            if not whole:
                marker.unlink()
                damaged.append(shard)
        progress.close()
        return damaged

    @property
    def offsets(self) -> np.ndarray:
        return self.index.offsets

    @property
    def n_frames(self) -> int:
        return int(self.index.offsets[-1])

    def _create(self, widths: dict[str, int], attrs: dict, chunk_frames: int) -> None:
        if (self.path / "zarr.json").exists():
            raise StoreError(f"cannot create {self.path}: a Zarr store is already there")
        # mode "a": the folder already holds our lock file, which "w-" counts as data
        self.group = zarr.open_group(str(self.path), mode="a", zarr_format=3)
        self.group.attrs[ATTRS_KEY] = {**attrs, "format_version": FORMAT_VERSION,
                                       "complete": False}
        self.arrays = {}
        for name, (dtype, extra, dims) in frame_arrays(widths).items():
            self.arrays[name] = self.group.create_array(
                name, shape=(self.n_frames, *extra), dtype=dtype,
                chunks=(chunk_frames, *extra), shards=(self.shard_frames, *extra),
                compressors=None, fill_value=0, dimension_names=dims,
                config={"write_empty_chunks": True})
        self._write_index()

    def _write_index(self) -> None:
        """offsets, spans and utterances/<field> (small, one chunk each, written even where it
        holds only the fill value, e.g. no text at all: the loader takes a missing one for
        damage)."""
        arrays = [(OFFSETS, self.index.offsets.astype(np.int64), ("utterance_edge",), None),
                  (SPANS, self.index.spans.astype(np.int64), ("utterance", "edge"), None)]
        arrays += [(f"{UTTERANCE_GROUP}/{name}", np.array(values, dtype=object), ("utterance",),
                    str) for name, values in self.index.fields.items()]
        for name, values, dims, dtype in arrays:
            array = self.group.create_array(name, shape=values.shape,
                                            dtype=dtype or values.dtype,
                                            chunks=(max(1, len(values)), *values.shape[1:]),
                                            dimension_names=dims, overwrite=True,
                                            config={"write_empty_chunks": True})
            array[:] = values

    def _check_resumable(self, attrs: dict, chunk_frames: int) -> None:
        record = self.group.attrs.get(ATTRS_KEY, {})
        problems = []
        if fields := differing_fields(record.get("config"), attrs["config"]):
            problems.append(f"config ({', '.join(fields)})")
        if record.get("manifest_sha256") != attrs["manifest_sha256"]:
            problems.append("manifest_sha256")
        if record.get("format_version") != FORMAT_VERSION:
            problems.append("format_version")
        expected = [self.index]
        if record.get("compacting"):           # its index may already be the compacted one
            expected.append(self.index.without(record["compacting"]["removed"]))
        stored = self._stored_index()
        if stored is None or not any(stored.same_as(index) for index in expected):
            problems.append("utterances (ids, texts, frame counts or sample spans)")
        mel = self.group["mel"] if "mel" in self.group else None
        if mel is None or mel.chunks[0] != chunk_frames or mel.shards[0] != self.shard_frames:
            problems.append("chunk/shard sizes")
        if problems:
            raise StoreError(f"cannot resume {self.path}: it was started with different "
                             f"{', '.join(problems)}; rerun with --overwrite to start over")

    def _stored_index(self) -> UtteranceIndex | None:
        if not (OFFSETS in self.group and SPANS in self.group
                and UTTERANCE_GROUP in self.group):
            return None
        return UtteranceIndex(np.asarray(self.group[OFFSETS][:]),
                              np.asarray(self.group[SPANS][:]),
                              utterance_fields(self.group[UTTERANCE_GROUP]))

    def _frame_speakers(self, lo: int, hi: int) -> tuple[list[str], np.ndarray] | None:
        """The speakers of frames [lo, hi) in order of first appearance, and each frame's
        index into them; None for a corpus without speakers."""
        if "speaker" not in self.index.fields:
            return None
        utterance = np.searchsorted(self.offsets, np.arange(lo, hi), side="right") - 1
        first, last = int(utterance[0]), int(utterance[-1])
        speakers = self.index.fields["speaker"][first:last + 1]
        names = list(dict.fromkeys(speakers))
        number = {name: k for k, name in enumerate(names)}
        return names, np.array([number[s] for s in speakers])[utterance - first]

    @property
    def num_shards(self) -> int:
        return -(-self.n_frames // self.shard_frames)

    @property
    def complete(self) -> bool:
        return bool(self.group.attrs.get(ATTRS_KEY, {}).get("complete"))

    def _shard_range(self, shard: int) -> tuple[int, int]:
        return shard * self.shard_frames, min((shard + 1) * self.shard_frames, self.n_frames)

    def _shards_of(self, index: int) -> range:
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return range(start // self.shard_frames, (stop - 1) // self.shard_frames + 1)

    def needed(self, index: int) -> bool:
        """Whether utterance `index` still has frames for this writer to write."""
        return any(s in self.missing for s in self._shards_of(index))

    def add(self, index: int, features: dict[str, np.ndarray]) -> None:
        """Place utterance `index`'s features ([T, ...] each); write shards it completes."""
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        for shard in self._shards_of(index):
            if shard not in self.missing:
                continue
            lo, hi = self._shard_range(shard)
            a, b = max(start, lo), min(stop, hi)
            buffer = self.buffers.get(shard)
            if buffer is None:
                buffer = self.buffers[shard] = {
                    name: np.zeros((hi - lo, *array.shape[1:]), dtype=array.dtype)
                    for name, array in self.arrays.items()}
            for name in self.arrays:
                buffer[name][a - lo:b - lo] = features[name][a - start:b - start]
            self.missing[shard] -= b - a
            if self.missing[shard] == 0:
                del self.missing[shard]
                self._flush_in_background(shard, self.buffers.pop(shard))

    def _flush_in_background(self, shard: int, buffer: dict[str, np.ndarray]) -> None:
        """Queue the shard for the writing thread; wait while QUEUED_SHARDS are queued (memory
        stays bounded when the disk is slower than the features), raising any write error."""
        if self._writing is None:
            self._writing = ThreadPoolExecutor(1, thread_name_prefix="shard-writer")
        self._queued.append(self._writing.submit(self._flush, shard, buffer))
        while len(self._queued) > QUEUED_SHARDS or (self._queued and self._queued[0].done()):
            self._queued.popleft().result()

    def wait(self, raise_error: bool = True) -> None:
        """Return once every queued shard is written and marked; then raise the first write
        error, if any and `raise_error`."""
        errors = []
        while self._queued:
            try:
                self._queued.popleft().result()
            except Exception as e:
                errors.append(e)
        if self._writing is not None:
            self._writing.shutdown()
            self._writing = None
        if errors and raise_error:
            raise errors[0]

    def _flush(self, shard: int, buffer: dict[str, np.ndarray]) -> None:
        """Write a completed shard, then its marker with its statistics moments."""
        lo, hi = self._shard_range(shard)
        self._write(shard, buffer, shard_moments(buffer, self._frame_speakers(lo, hi)))

    def write_open_shards(self) -> None:
        """Write the shards left open by utterances that never arrived (no marker)."""
        self.wait()
        for shard, buffer in self.buffers.items():
            self._write(shard, buffer)
        self.buffers = {}

    def _write(self, shard: int, buffer: dict[str, np.ndarray], moments: dict | None = None
               ) -> None:
        """The shard's file in every array, then its marker if `moments` are given."""
        try:
            for name, array in self.arrays.items():
                write_shard(self.path / name, shard, buffer[name], array.chunks[0],
                            self.shard_frames)
            if moments is not None:
                marker = marker_file(self.path, shard)
                partial = marker.with_suffix(".tmp")
                partial.write_text(json.dumps(moments))
                os.replace(partial, marker)
        except OSError as e:
            raise StoreError(f"writing shard {shard} of {self.path} failed: "
                             f"{e.strerror or e}") from e

    @property
    def compacting(self) -> dict | None:
        """The unfinished compaction ({"removed": indices, "rejected": reasons}), if any."""
        return self.group.attrs.get(ATTRS_KEY, {}).get("compacting") or None

    def remove_utterances(self, removed: list[int], rejected: list[dict]) -> None:
        """Drop utterances (decoder failures found after the layout was fixed, with `rejected`
        their reasons): shift every later frame left in place, shard by shard, and shrink the
        arrays. The result is the store a run without them would have written. Needs every
        writer's open shards written first (`write_open_shards`).

        Resumable from any point: the attributes record what is being removed, a marker counts
        a shard as compacted, and each shard's new contents are staged in progress/ before it
        is overwritten (it may overlap its own source). Call it again, on a writer opened with
        the index from before, to finish; `finish` clears the record."""
        old = self.index
        old_offsets = old.offsets
        self.index = old.without(removed)
        first = int(old_offsets[min(removed)]) // self.shard_frames
        if not self.compacting:
            # a crash before the record only costs re-extracting these shards on --resume
            for shard in marked_shards(self.path):
                if shard >= first:
                    marker_file(self.path, shard).unlink()
            self.group.attrs[ATTRS_KEY] = {**self.group.attrs[ATTRS_KEY],
                                           "compacting": {"removed": removed,
                                                          "rejected": rejected}}
        self._write_index()
        done = marked_shards(self.path)
        # new frame -> old frame
        old_position = np.flatnonzero(np.repeat(old.kept(removed), np.diff(old_offsets)))
        for shard in range(first, self.num_shards):
            staged = marker_file(self.path, shard).with_suffix(".npz")
            if shard not in done:
                lo, hi = self._shard_range(shard)
                self._flush(shard, self._staged(staged, old_position[lo:hi]))
            staged.unlink(missing_ok=True)
        for array in self.arrays.values():
            array.resize((self.n_frames, *array.shape[1:]))
        self.missing = {}          # `finish` clears the record: until then --resume redoes this

    def _staged(self, path: Path, sources: np.ndarray) -> dict[str, np.ndarray]:
        """A compacted shard's contents: from `path` if staged there already, else read from
        the (old) frames `sources`, contiguous but for the removed gaps, and staged."""
        if path.exists():
            with np.load(path, allow_pickle=False) as staged:
                return {name: staged[name] for name in self.arrays}
        a, b = int(sources[0]), int(sources[-1]) + 1
        contents = {name: array[a:b][sources - a] for name, array in self.arrays.items()}
        partial = path.with_name(path.name + ".tmp")
        with open(partial, "wb") as f:
            np.savez(f, **contents)
        os.replace(partial, path)
        return contents

    def finish(self, attrs: dict) -> None:
        """Record statistics and final attributes, mark the store complete, drop progress/."""
        self.wait()
        unwritten = set(range(self.num_shards)) - marked_shards(self.path)
        if unwritten:
            raise StoreError(f"{len(unwritten)} shard(s) of {self.path} were never completed")
        moments = [json.loads(marker_file(self.path, s).read_text())
                   for s in range(self.num_shards)]
        record = dict(self.group.attrs[ATTRS_KEY])
        record.update(attrs, stats=combine(moments), complete=True)
        record.pop("compacting", None)
        self.group.attrs[ATTRS_KEY] = record
        shutil.rmtree(self.path / PROGRESS, ignore_errors=True)
