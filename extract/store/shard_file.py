"""Whole shards of the store's frame arrays, written straight to their files.

The layout of the Zarr v3 sharding codec as the store's arrays use it (the `bytes` codec inside,
the index at the end with a crc32c; extract.loader.shard_reader reads the same): the inner
chunks back to back, rows contiguous, a partial last chunk padded with the fill value 0 as
zarr-python pads it; then (offset, nbytes) as little-endian uint64 per chunk, ABSENT_CHUNK for
chunks past the array's end; then the crc32c of that index. zarr-python's own write path spent
about 4 ms per array and shard here, most of a job's writing time.

A shard goes to a temporary file that is then renamed: its file is whole or absent, unless
the machine crashed before the kernel wrote it to disk (`shard_is_whole` checks).
"""

from __future__ import annotations

import os
from pathlib import Path

import google_crc32c
import numpy as np

from extract.store.layout import ABSENT_CHUNK, shard_file


def shard_bytes(rows: np.ndarray, chunk_rows: int, shard_rows: int) -> tuple[np.ndarray, bytes]:
    """One shard's first `len(rows)` rows -> (its chunks as one little-endian array, the index
    with its checksum)."""
    if not 0 < len(rows) <= shard_rows or shard_rows % chunk_rows:
        raise ValueError(f"{len(rows)} rows do not fit a shard of {shard_rows} rows in chunks of "
                         f"{chunk_rows}")
    chunks = -(-len(rows) // chunk_rows)
    data = np.zeros((chunks * chunk_rows, *rows.shape[1:]), dtype=rows.dtype.newbyteorder("<"))
    data[: len(rows)] = rows
    return data, shard_index(chunks, data.nbytes // chunks, chunk_rows, shard_rows)


def shard_index(chunks: int, chunk_bytes: int, chunk_rows: int, shard_rows: int) -> bytes:
    """The index (with its checksum) of a shard whose first `chunks` chunks are stored."""
    index = np.full((shard_rows // chunk_rows, 2), ABSENT_CHUNK, dtype="<u8")
    index[:chunks, 0] = np.arange(chunks, dtype=np.uint64) * np.uint64(chunk_bytes)
    index[:chunks, 1] = chunk_bytes
    raw_index = index.tobytes()
    return raw_index + google_crc32c.value(raw_index).to_bytes(4, "little")


def shard_is_whole(array_dir: Path, shard: int, rows: int, row_bytes: int, ndim: int,
                   chunk_rows: int, shard_rows: int) -> bool:
    """Whether the file of shard `shard` (`rows` rows of `row_bytes`) has the size and ends
    with the index `write_shard` gives it: false for a file that is missing, empty, cut short
    or zeros at its end, as a machine crash can leave one whose data never reached the disk."""
    chunks = -(-rows // chunk_rows)
    index = shard_index(chunks, chunk_rows * row_bytes, chunk_rows, shard_rows)
    path = shard_file(array_dir, shard, ndim)
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != chunks * chunk_rows * row_bytes + len(index):
                return False
            f.seek(-len(index), os.SEEK_END)
            return f.read() == index
    except FileNotFoundError:
        return False


def write_shard(array_dir: Path, shard: int, rows: np.ndarray, chunk_rows: int,
                shard_rows: int) -> None:
    """Write shard `shard` of the array in `array_dir` (sharded along its first axis) with
    `rows`, the frames [shard * shard_rows, ...) up to the array's end or the shard's."""
    data, index = shard_bytes(rows, chunk_rows, shard_rows)
    path = shard_file(array_dir, shard, rows.ndim)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(data.reshape(-1).view(np.uint8))
        f.write(index)
    os.replace(partial, path)
