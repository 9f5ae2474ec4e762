"""Row-range reads from an uncompressed, sharded Zarr v3 array, straight from its shard files.

Written from the Zarr v3 sharding codec spec: a shard file holds its inner chunks followed by an
index of (offset, nbytes) uint64 pairs per chunk (2^64-1 for an absent chunk) and a crc32c,
which is checked as zarr-python checks it.
With the plain `bytes` codec a chunk's rows are contiguous, so reading frames [a, b) is one
positioned read per chunk touched, straight into the output array: no decoding and none of
zarr-python's per-call overhead (about 1.7 ms a read, 20x a .npy load). Arrays with any other
codec chain are read through zarr instead.
"""

from __future__ import annotations

import os
import resource
import threading
from collections import Counter, OrderedDict
from pathlib import Path

import google_crc32c
import numpy as np

from extract.store.layout import ABSENT_CHUNK, shard_file

# Share of the process's open-file limit that one reader may hold open. Random access touches
# every shard, and one open file per shard and array would pass the common limit of 1024 from
# about 200 shards (an LJSpeech-sized store) on; a store has up to 6 such arrays, and a training
# loop may open a few stores.
OPEN_FILES_SHARE = 1 / 32
MIN_OPEN_SHARDS = 16


def max_open_shards() -> int:
    """Shard files one reader keeps open: its share of the open-file limit (RLIMIT_NOFILE)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(MIN_OPEN_SHARDS, int(soft * OPEN_FILES_SHARE))


def raw_layout(metadata: dict) -> dict | None:
    """The parameters for raw reads of an array whose metadata zarr-python parsed
    (zarr.Array.metadata.to_dict()), or None when it is not laid out for them."""
    codecs = metadata.get("codecs", [])
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    config = codecs[0]["configuration"]
    inner = config.get("codecs", [])
    index_codecs = [c.get("name") for c in config.get("index_codecs", [])]
    key_encoding = metadata.get("chunk_key_encoding", {})
    if (len(inner) != 1 or inner[0].get("name") != "bytes"
            or inner[0].get("configuration", {}).get("endian", "little") != "little"
            or config.get("index_location", "end") != "end"
            or index_codecs not in (["bytes"], ["bytes", "crc32c"])
            or key_encoding.get("name") != "default"
            or metadata["shape"][1:] != config["chunk_shape"][1:]):
        return None
    chunk_rows = config["chunk_shape"][0]
    shard_rows = metadata["chunk_grid"]["configuration"]["chunk_shape"][0]
    if not 0 < chunk_rows <= shard_rows or shard_rows % chunk_rows:    # zarr could not read it
        return None
    return {"chunk_rows": chunk_rows, "shard_rows": shard_rows,
            "separator": key_encoding.get("configuration", {}).get("separator", "/"),
            "index_checksum": len(index_codecs) == 2}


def read_into(fd: int, buffer: memoryview, offset: int) -> int:
    """Read len(buffer) bytes of file `fd` from `offset` into `buffer` (one copy, where
    os.preadv exists: Linux, the BSDs, macOS 11 on); return the bytes read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buffer], offset)
    data = os.pread(fd, len(buffer), offset)
    buffer[:len(data)] = data
    return len(data)


REEXTRACT = "extract the store again (tts-extract run --overwrite)"
COPIED_IN_PART = f"(was the store copied in part?); copy it again, or {REEXTRACT}"


class StoreFormatError(ValueError):
    """The path is not a complete tts-extract store this version can read."""


class StoreReplacedError(StoreFormatError):
    """The store was replaced (e.g. by `tts-extract run --overwrite`), moved or deleted after it
    was opened."""


def _identity(path: Path) -> tuple[int, int] | None:
    """A file's size and modification time (not its inode, which FUSE mounts such as rclone's
    may number anew while the file stays as it was), or None where it is gone."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


class StoreVersion:
    """The store's root zarr.json as it was at open. A job that replaces the store (--overwrite)
    deletes that file before it writes any new one, so a reader that checks it after opening a
    file cannot pair the index it read at open with another store's frames."""

    def __init__(self, store: Path):
        self.root = Path(store) / "zarr.json"
        self.identity = _identity(self.root)

    def check(self) -> None:
        """StoreReplacedError unless zarr.json is still the file seen at open (its size and
        modification time)."""
        if _identity(self.root) != self.identity:
            raise StoreReplacedError(f"{self.root.parent} was replaced, moved or deleted "
                                     "after it was opened (by tts-extract run --overwrite?): "
                                     "the index read then may not fit its files; open it again")


class ShardReader:
    """Reads rows [start, stop) of one array, from any number of threads. Shard indexes are
    cached; at most max_open_shards() shard files stay open, the least recently read closed
    first (once no thread is reading it: its descriptor's number could otherwise be reused for
    another file while a read is under way)."""

    def __init__(self, array_dir: Path, metadata: dict, version: StoreVersion):
        """metadata: the array's, as zarr-python parsed it (zarr.Array.metadata.to_dict());
        version: its store's at open, checked whenever a shard file is opened."""
        self.version = version
        self.indexes: dict[int, np.ndarray] = {}
        self.files: OrderedDict[int, int] = OrderedDict()    # shard -> descriptor, oldest first
        self.reading: Counter[int] = Counter()      # descriptor -> reads under way
        self.closing: set[int] = set()              # out of `files`, closed when its reads end
        self.lock = threading.Lock()                # guards the three above and `indexes`
        self.max_open = max_open_shards()
        self.dir = Path(array_dir)
        layout = raw_layout(metadata)
        if layout is None:
            raise ValueError(f"{array_dir} is not an uncompressed sharded array")
        self.shape = tuple(metadata["shape"])
        self.dtype = np.dtype(metadata["data_type"]).newbyteorder("<")
        self.fill = np.array(metadata["fill_value"], dtype=self.dtype)
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        self.chunk_rows, self.shard_rows = layout["chunk_rows"], layout["shard_rows"]
        self.chunks_per_shard = self.shard_rows // self.chunk_rows
        self.checksum = layout["index_checksum"]
        self.index_bytes = 16 * self.chunks_per_shard + (4 if self.checksum else 0)
        self.separator = layout["separator"]

    def _shard(self, shard: int) -> tuple[int, np.ndarray]:
        """(file descriptor, index [chunks, 2]) of a shard. Called holding the lock; the caller
        counts the descriptor in `reading`."""
        fd = self.files.get(shard)
        if fd is not None:
            self.files.move_to_end(shard)
            return fd, self.indexes[shard]
        try:
            fd = os.open(self._path(shard), os.O_RDONLY)
        except FileNotFoundError:      # zarr would read fill values: zeros in place of frames
            self.version.check()
            raise StoreFormatError(f"shard file {self._path(shard)} is missing "
                                   f"{COPIED_IN_PART}") from None
        try:
            self.version.check()       # after the open, so the file is the index's
            if shard not in self.indexes:
                self.indexes[shard] = self._read_index(fd, shard)
        except BaseException:          # replaced or damaged: kept closed, named on each read
            os.close(fd)
            raise
        if len(self.files) >= self.max_open:
            self._close(self.files.popitem(last=False)[1])
        self.files[shard] = fd
        return fd, self.indexes[shard]

    def _read_index(self, fd: int, shard: int) -> np.ndarray:
        """A shard file's chunk index [chunks, 2], checked against the file: its checksum
        matches, and every stored chunk is whole (the `bytes` codec's size) and inside the data
        before the index."""
        size = os.fstat(fd).st_size
        data_bytes, chunk_bytes = size - self.index_bytes, self.chunk_rows * self.row_bytes
        raw = os.pread(fd, self.index_bytes, data_bytes) if data_bytes >= 0 else b""
        problem = f"{size} bytes, too few for its index" if len(raw) < self.index_bytes else None
        if problem is None and self.checksum and \
                google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            problem = "its index does not match its checksum"
        if problem is None:
            index = np.frombuffer(raw, dtype="<u8", count=2 * self.chunks_per_shard)
            index = index.reshape(-1, 2)
            offset, nbytes = index[index[:, 0] != ABSENT_CHUNK].T
            if (nbytes != chunk_bytes).any() or (offset > data_bytes - chunk_bytes).any():
                problem = "its index names chunks that are not in it (cut short?)"
        if problem:
            raise StoreFormatError(f"shard file {self._path(shard)} is damaged: {problem}; "
                                   f"{REEXTRACT}")
        return index

    def _path(self, shard: int) -> Path:
        return shard_file(self.dir, shard, len(self.shape), self.separator)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        row = start
        while row < stop:
            chunk = row // self.chunk_rows
            end = min(stop, (chunk + 1) * self.chunk_rows)
            self._read_rows(out[row - start:end - start], chunk, row - chunk * self.chunk_rows)
            row = end
        return out

    def _read_rows(self, out: np.ndarray, chunk: int, skip: int) -> None:
        """Rows of one chunk, from its row `skip` on, into `out`."""
        number = chunk // self.chunks_per_shard
        with self.lock:
            fd, index = self._shard(number)
            offset = index[chunk % self.chunks_per_shard, 0]
            if offset == ABSENT_CHUNK:
                out[:] = self.fill
                return
            self.reading[fd] += 1
        rows = memoryview(out).cast("B")
        try:
            got = read_into(fd, rows, int(offset) + skip * self.row_bytes)
        finally:
            with self.lock:
                self.reading[fd] -= 1
                if fd in self.closing:
                    self._close(fd)
        if got < len(rows):
            raise StoreFormatError(f"shard file {self._path(number)} ended early: was it "
                                   "changed while the store was open?")

    def _close(self, fd: int) -> None:
        """Close a descriptor that left `files` once no read is under way on it (holding the
        lock)."""
        if self.reading[fd] > 0:
            self.closing.add(fd)
            return
        self.closing.discard(fd)
        self.reading.pop(fd, None)
        os.close(fd)

    def close(self) -> None:
        """Close every file, once no read is under way (without the lock, which a process
        forked while another thread held it could never take)."""
        for fd in [*self.files.values(), *self.closing]:
            os.close(fd)
        self.files.clear()
        self.closing.clear()

    def __del__(self) -> None:
        self.close()
