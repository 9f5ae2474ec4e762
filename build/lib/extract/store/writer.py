"""Stream per-utterance features into one Zarr v3 store, writing whole shards only.

Frame offsets are fixed before extraction (from WAV headers), so arrays are created once at
their final size. Results may arrive in any order; each is copied into the buffer of the shards
it overlaps, and a shard is written, whole and once, when all its frames have arrived. The root
group is marked complete only by `finish()`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import zarr

from extract.store.layout import (ATTRS_KEY, CHUNK_FRAMES, FORMAT_VERSION, FRAME_ARRAYS,
                                  OFFSETS, SHARD_FRAMES, UTTERANCE_GROUP)


class StoreError(RuntimeError):
    """The output store cannot be created or written."""


def prepare_output(path: Path, overwrite: bool) -> None:
    """Refuse an existing output unless `overwrite`; even then delete only a store of ours."""
    if not path.exists():
        return
    if not overwrite:
        raise StoreError(f"{path} already exists; pass --overwrite to replace it")
    ours = (path / "zarr.json").is_file() and ATTRS_KEY in (path / "zarr.json").read_text()
    if path.is_dir() and (ours or not any(path.iterdir())):
        shutil.rmtree(path)
    else:
        raise StoreError(f"{path} exists and is not a tts-extract store; refusing to delete it")


class StoreWriter:
    def __init__(self, path: Path, offsets: np.ndarray, n_mels: int, ids: list[str],
                 texts: list[str], attrs: dict, chunk_frames: int = CHUNK_FRAMES,
                 shard_frames: int = SHARD_FRAMES):
        self.path = path
        self.shard_frames = shard_frames
        self.offsets = offsets
        self.n_frames = int(offsets[-1])
        try:
            self.group = zarr.open_group(str(path), mode="w-", zarr_format=3)
        except (OSError, FileExistsError, zarr.errors.ContainsGroupError) as e:
            raise StoreError(f"cannot create {path}: {e}") from e
        self.group.attrs[ATTRS_KEY] = {**attrs, "format_version": FORMAT_VERSION,
                                       "complete": False}
        self.arrays = {}
        for name, (dtype, trailing, dims) in FRAME_ARRAYS.items():
            extra = (n_mels,) if trailing else ()
            self.arrays[name] = self.group.create_array(
                name, shape=(self.n_frames, *extra), dtype=dtype,
                chunks=(chunk_frames, *extra), shards=(shard_frames, *extra),
                compressors=None, fill_value=0, dimension_names=dims,
                config={"write_empty_chunks": True})
        self._write_small(OFFSETS, offsets.astype(np.int64), ("utterance_edge",))
        for name, values in (("id", ids), ("text", texts)):
            self._write_small(f"{UTTERANCE_GROUP}/{name}", np.array(values, dtype=object),
                              ("utterance",), dtype=str)
        self.buffers: dict[int, dict[str, np.ndarray]] = {}
        self.missing = {s: self._shard_range(s)[1] - self._shard_range(s)[0]
                        for s in range(self.num_shards)}

    @property
    def num_shards(self) -> int:
        return -(-self.n_frames // self.shard_frames)

    def _shard_range(self, shard: int) -> tuple[int, int]:
        return shard * self.shard_frames, min((shard + 1) * self.shard_frames, self.n_frames)

    def _write_small(self, name: str, values: np.ndarray, dims: tuple[str, ...], dtype=None):
        array = self.group.create_array(name, shape=values.shape, dtype=dtype or values.dtype,
                                        chunks=(max(1, len(values)),), dimension_names=dims)
        array[:] = values

    def add(self, index: int, features: dict[str, np.ndarray]) -> None:
        """Place utterance `index`'s features ([T, ...] each); write shards it completes."""
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        for shard in range(start // self.shard_frames, (stop - 1) // self.shard_frames + 1):
            lo, hi = self._shard_range(shard)
            a, b = max(start, lo), min(stop, hi)
            buffer = self.buffers.get(shard)
            if buffer is None:
                buffer = self.buffers[shard] = {
                    name: np.zeros((hi - lo, *self.arrays[name].shape[1:]), dtype=dtype)
                    for name, (dtype, _, _) in FRAME_ARRAYS.items()}
            for name in FRAME_ARRAYS:
                buffer[name][a - lo:b - lo] = features[name][a - start:b - start]
            self.missing[shard] -= b - a
            if self.missing[shard] == 0:
                self._flush(shard)

    def _flush(self, shard: int) -> None:
        lo, hi = self._shard_range(shard)
        buffer = self.buffers.pop(shard)
        try:
            for name, array in self.arrays.items():
                array[lo:hi] = buffer[name]
        except OSError as e:
            raise StoreError(f"writing shard {shard} of {self.path} failed: {e}") from e

    def finish(self, attrs: dict) -> None:
        """Record final attributes and mark the store complete; every frame must be written."""
        unwritten = [s for s, n in self.missing.items() if n]
        if unwritten:
            raise StoreError(f"{len(unwritten)} shard(s) of {self.path} were never completed")
        record = dict(self.group.attrs[ATTRS_KEY])
        record.update(attrs, complete=True)
        self.group.attrs[ATTRS_KEY] = record
