"""Untrusted stores and hostile environments: broken stores give clear errors, opening a store
never unpickles anything, a full disk or unwritable output is a clear error that leaves the
dataset untouched, and nothing lands outside the output folder."""

import copy
import errno
import hashlib
import json
import os
import pickle
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import Future
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import torch
import zarr

from extract.job import run_job
from extract.loader import FeatureStore, StoreFormatError
from extract.store import writer as writer_module
from extract.store.layout import ATTRS_KEY, CHUNK_FRAMES, SHARD_FRAMES
from extract.store.lock import LOCK_NAME
from extract.store.output import StoreError

from conftest import MIXED_SPECS, write_corpus

N = len(MIXED_SPECS)             # utterances in mixed_store


def copy_store(store: Path, tmp_path: Path) -> tuple[Path, zarr.Group]:
    path = tmp_path / "copy.zarr"
    shutil.copytree(store, path)
    return path, zarr.open_group(str(path), mode="r+")


def rewrite(group: zarr.Group, name: str, values: np.ndarray) -> None:
    group.create_array(name, shape=values.shape, dtype="int64", overwrite=True)[:] = values


def rewrite_strings(group: zarr.Group, name: str, values: list[str]) -> None:
    """A string array of `values`, its chunk written even where they are all fill values."""
    group.create_array(name, shape=(len(values),), dtype=str, overwrite=True,
                       config={"write_empty_chunks": True})[:] = np.array(values, dtype=object)


@pytest.mark.parametrize("damage,message", [
    (lambda g, p: rewrite(g, "offsets", g["offsets"][:][::-1].copy()), "not monotonic"),
    (lambda g, p: rewrite(g, "offsets", g["offsets"][:] + 1), "not monotonic from 0"),
    (lambda g, p: rewrite(g, "spans", g["spans"][:-1]), f"spans must hold {N}"),
    (lambda g, p: rewrite(g, "spans", g["spans"][:][:, ::-1].copy()), "0 <= start <= end"),
    (lambda g, p: rewrite_strings(g, "utterances/text", [""]),
     f"1 utterances/text, .* and {N} utterances"),
    (lambda g, p: rewrite_strings(g, "utterances/audio", ["a", "b"]),
     f"2 utterances/audio and {N} utterances"),
    (lambda g, p: rewrite_strings(g, "utterances/speaker", [""] * (N + 1)),
     f"{N + 1} utterances/speaker and {N} utterances"),
    (lambda g, p: rewrite_strings(g, "utterances/speaker", ["p9"] * N),
     r"speaker\(s\) \['p9'\] have no statistics"),
    (lambda g, p: rewrite_strings(g, "utterances/id", ["x"] * N),
     r"utterance id\(s\) \['x'\] appear more than once"),
    (lambda g, p: shutil.rmtree(p / "utterances" / "audio"),
     r"lacks array\(s\) \['utterances/audio'\]"),
    (lambda g, p: g.attrs.put({ATTRS_KEY: {**g.attrs[ATTRS_KEY], "format_version": 99}}),
     "format version 99"),
    (lambda g, p: shutil.rmtree(p / "f0"), "lacks array"),
    (lambda g, p: g["energy"].resize((5,)), "energy has 5 frames"),
    (lambda g, p: change_record(g, lambda r: r["config"].update(n_mels=81)),
     r"mel has shape \(\d+, 80\), not \(frames, config.n_mels = 81\)"),
    (lambda g, p: (p / "zarr.json").write_text("{not json"), "cannot be opened"),
    (lambda g, p: g.attrs.put({}), "not a tts-extract store"),
])
def test_inconsistent_stores_give_clear_errors(mixed_store, tmp_path, damage, message):
    path, group = copy_store(mixed_store, tmp_path)
    damage(group, path)
    with pytest.raises(StoreFormatError, match=message):
        FeatureStore(path)


def change_record(group: zarr.Group, change) -> None:
    record = copy.deepcopy(group.attrs[ATTRS_KEY])
    change(record)
    group.attrs.put({ATTRS_KEY: record})


@pytest.mark.parametrize("change,message", [
    (lambda r: r.pop("stats"), "damaged: stats is missing"),
    (lambda r: r["config"].update(hop_length="256"),
     "config.hop_length is '256', not an integer"),
    (lambda r: r["config"]["pitch"].pop("method"), "config.pitch.method is missing"),
    (lambda r: r["stats"].update(speakers={"p1": {}}),
     r"stats.speakers\['p1'\].f0_mean is missing"),
    (lambda r: r["stats"].update(f0_voiced_frames=True),
     "f0_voiced_frames is True, not an integer"),
    (lambda r: r["run"]["stage_s"].update(decode=None), r"run.stage_s\['decode'\] is None, not a"),
    (lambda r: r.update(rejected=[{"line": 1}]), r"rejected\[0\].entry is missing"),
    (lambda r: r.update(versions=[]), r"versions is \[\], not a mapping"),
])
def test_a_damaged_record_is_named_at_open(mixed_store, tmp_path, change, message):
    """Every field of the tts_extract attribute that reading or describing a store uses is
    checked when it opens, so a damaged one cannot fail later in a DataLoader worker."""
    path, group = copy_store(mixed_store, tmp_path)
    change_record(group, change)
    with pytest.raises(StoreFormatError, match=message):
        FeatureStore(path)
    result = subprocess.run([sys.executable, "-m", "extract", "inspect", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"tts-extract: error: {path}: its tts_extract attribute")


def test_a_store_with_a_zero_run_time_still_describes(mixed_store, tmp_path):
    path, group = copy_store(mixed_store, tmp_path)
    change_record(group, lambda r: r["run"].update(elapsed_s=0))
    assert "in 0.0 s, batch size" in FeatureStore(path).describe()


@pytest.mark.parametrize("array,cut_to,message", [
    ("mel", 0.5, "its index does not match its checksum"),
    ("f0", 0.5, "its index does not match its checksum"),
    ("energy", 100, "100 bytes, too few for its index"),
])
def test_a_cut_shard_file_is_named_when_read(mixed_store, tmp_path, array, cut_to, message):
    """A shard file cut short (a copy that stopped, a full disk elsewhere) would have its index
    read from the middle of its data: the reader checks the index against the file instead of
    returning whatever that index points at (in_memory reads the same way, at open)."""
    path, _ = copy_store(mixed_store, tmp_path)
    shard = next(p for p in (path / array / "c").rglob("*") if p.is_file())
    os.truncate(shard, int(shard.stat().st_size * cut_to) if cut_to < 1 else cut_to)
    for in_memory in (False, True):
        with pytest.raises(StoreFormatError,
                           match=re.escape(f"shard file {shard} is damaged: {message}")):
            store = FeatureStore(path, in_memory=in_memory)
            for i in range(len(store)):
                store[i]


@pytest.mark.parametrize("array", ["mel", "voiced"])
def test_a_missing_shard_file_is_named_not_read_as_zeros(mixed_store, tmp_path, array):
    """zarr reads a shard whose file is not there as its fill value, but every shard of a
    finished store was written: a missing one (a copy of the store made in part) is named, in
    both modes, on every read of it."""
    path, _ = copy_store(mixed_store, tmp_path)
    shard = path / array / "c" / "0" / "0" if array == "mel" else path / array / "c" / "0"
    shard.unlink()
    expected = re.escape(f"shard file {shard} is missing (was the store copied in part?)")
    with pytest.raises(StoreFormatError, match=expected):
        FeatureStore(path, in_memory=True)
    store = FeatureStore(path)
    for _ in range(2):
        with pytest.raises(StoreFormatError, match=expected):
            store[0]


@pytest.mark.parametrize("array", ["offsets", "spans", "utterances/id", "utterances/text",
                                   "utterances/audio"])
def test_a_missing_chunk_of_an_index_array_is_named(mixed_store, tmp_path, array):
    """zarr reads a missing chunk file as the fill value: every text '', every span [0, 0]
    (offsets of zeros at least fail their own check). The job writes each one, so a missing
    one is named at open."""
    path, _ = copy_store(mixed_store, tmp_path)
    for chunk in [p for p in (path / array / "c").rglob("*") if p.is_file()]:
        chunk.unlink()
    with pytest.raises(StoreFormatError, match=re.escape(
            f"{path / array}: 1 of its 1 chunk file(s) are missing (was the store copied in "
            "part?)")):
        FeatureStore(path)


@pytest.mark.parametrize("array", ["mel", "voiced"])
def test_a_shard_index_that_fails_its_checksum_is_named_when_read(mixed_store, tmp_path, array):
    """A shard index whose first chunk is marked absent (a flipped bit could do it) is still
    within the file, and an absent chunk reads as zeros: only the index's crc32c tells. Both
    modes check it (a checksum made to match shows that it is what tells), and the raw reader
    still checks an index that matches its checksum against the file."""
    path, _ = copy_store(mixed_store, tmp_path)
    shard = path / array / "c" / "0" / "0" if array == "mel" else path / array / "c" / "0"
    data = bytearray(shard.read_bytes())
    index_start = len(data) - 4 - 16 * (SHARD_FRAMES // CHUNK_FRAMES)
    data[index_start:index_start + 16] = b"\xff" * 16
    shard.write_bytes(bytes(data))
    expected = re.escape(f"shard file {shard} is damaged: its index does not match its checksum")
    for in_memory in (False, True):
        with pytest.raises(StoreFormatError, match=expected):
            FeatureStore(path, in_memory=in_memory)[0]
    store = FeatureStore(path)
    for _ in range(2):      # and so on every read, not only the first (a loop may skip it)
        with pytest.raises(StoreFormatError, match="its index does not match its checksum"):
            store[0]
    data[-4:] = google_crc32c.value(bytes(data[index_start:-4])).to_bytes(4, "little")
    shard.write_bytes(bytes(data))
    assert not FeatureStore(path)[0][array].any()
    # and an index that matches its checksum is still checked against the file
    data[index_start:index_start + 8] = len(data).to_bytes(8, "little")
    data[-4:] = google_crc32c.value(bytes(data[index_start:-4])).to_bytes(4, "little")
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreFormatError, match="its index names chunks that are not in it"):
        FeatureStore(path)[0]


def edit_json(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("damage,message", [
    (lambda p: os.truncate(p / "offsets" / "c" / "0", 10), "offsets cannot be read ("),
    (lambda p: os.truncate(p / "utterances" / "text" / "c" / "0", 20),
     "utterances/text cannot be read ("),
    (lambda p: edit_json(p / "f0" / "zarr.json", lambda d: d.update(shape="many")),
     "the metadata of f0 cannot be read (TypeError"),
    (lambda p: (p / "spans" / "zarr.json").write_text('{"zarr_format": 3, "node_'),
     "the metadata of spans cannot be read (JSONDecodeError"),
    (lambda p: (p / "voiced" / "zarr.json").write_text(
        '{"zarr_format": 3, "node_type": "group", "attributes": {}}'), "voiced is not an array"),
])
def test_damaged_files_of_a_store_are_named(mixed_store, tmp_path, damage, message):
    """Damage that zarr-python, or one of its codecs, finds in its own way (a zstd frame, a
    metadata document): a StoreFormatError naming the array, at open or when read, in both
    modes; `inspect` (which reads no frames) fails with one line where opening does."""
    path, _ = copy_store(mixed_store, tmp_path)
    damage(path)
    for in_memory in (False, True):
        with pytest.raises(StoreFormatError, match=re.escape(message)):
            store = FeatureStore(path, in_memory=in_memory)
            for i in range(len(store)):
                store[i]
    try:
        FeatureStore(path)
        refused_at_open = False
    except StoreFormatError:
        refused_at_open = True
    result = subprocess.run([sys.executable, "-m", "extract", "inspect", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == (2 if refused_at_open else 0), result.stderr
    assert len(result.stderr.splitlines()) == refused_at_open, result.stderr


def test_randomly_damaged_stores_open_or_give_a_store_format_error(mixed_store, tmp_path):
    """Random damage to any file of a store (bytes changed, the file cut short, a value of a
    metadata document replaced): the store either opens and reads, or raises
    StoreFormatError; never another exception."""
    rng = random.Random(0)
    files = [f.relative_to(mixed_store) for f in sorted(mixed_store.rglob("*"))
             if f.is_file() and f.name != LOCK_NAME]
    outcomes = Counter()
    for attempt in range(150):
        path = tmp_path / f"{attempt}.zarr"
        shutil.copytree(mixed_store, path)
        target = path / rng.choice(files)
        data = bytearray(target.read_bytes())
        if target.name == "zarr.json" and rng.random() < 0.5:
            document = json.loads(data)
            where = document
            while isinstance(where.get(key := rng.choice(list(where))), dict) and where[key]:
                where = where[key]
            where[key] = rng.choice([None, -1, 0, 2 ** 40, "x", [], {}, True, [1, 2]])
            data = json.dumps(document).encode()
        elif rng.random() < 0.5:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            del data[rng.randrange(len(data)):]
        target.write_bytes(bytes(data))
        try:
            for in_memory in (False, True):
                store = FeatureStore(path, in_memory=in_memory)
                for i in range(len(store)):
                    store[i]
                store.describe()
            outcomes["read"] += 1
        except StoreFormatError:
            outcomes["refused"] += 1
        shutil.rmtree(path)
    assert outcomes["read"] > 10 and outcomes["refused"] > 50, outcomes


def test_opening_and_reading_a_store_never_unpickles(mixed_store, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a store read tried to unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: real_load(*a, **{**k, "allow_pickle": False}))
    for in_memory in (False, True):
        store = FeatureStore(mixed_store, in_memory=in_memory)
        assert [store[i]["mel"].shape[0] for i in range(len(store))] == store.lengths.tolist()
    group = zarr.open_group(str(mixed_store), mode="r")
    assert group["utterances/id"].metadata.data_type.to_json(zarr_format=3) == "string"


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_cli(*args, preexec_fn=None):
    return subprocess.run([sys.executable, "-m", "extract", "run", *map(str, args), "--device",
                           "cpu", "--quiet"], capture_output=True, text=True,
                          preexec_fn=preexec_fn)


def test_a_full_disk_is_a_clear_error_and_the_dataset_is_untouched(tmp_path):
    """RLIMIT_FSIZE makes writes past 200 kB fail (EFBIG) as a full disk would (ENOSPC)."""
    corpus = write_corpus(tmp_path / "c", [(f"u{k}", 3.0, 22050, 1, "pcm16") for k in range(8)])
    before = tree_digest(corpus)

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    result = run_cli(corpus, tmp_path / "out.zarr", "--shard-frames", "2048",
                     preexec_fn=small_disk)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tts-extract: error: writing shard 0")
    assert "File too large" in lines[0]
    assert tree_digest(corpus) == before
    with pytest.raises(StoreFormatError, match="incomplete"):
        FeatureStore(tmp_path / "out.zarr")


class DeferredExecutor:
    """A one-thread pool whose writes run when the next one is queued (or their result is
    asked for): the timing where the first shard's write has failed just as the second is
    queued, every time."""

    def __init__(self, *args, **kwargs):
        self.pending = []

    def submit(self, fn, *args) -> Future:
        for future in self.pending:
            future.run()
        future = DeferredWrite(fn, *args)
        self.pending = [future]
        return future

    def shutdown(self) -> None:
        for future in self.pending:
            future.run()


class DeferredWrite(Future):
    def __init__(self, fn, *args):
        super().__init__()
        self.call = lambda: fn(*args)

    def run(self) -> None:
        if not self.done():
            try:
                self.set_result(self.call())
            except Exception as e:
                self.set_exception(e)

    def result(self, timeout=None):
        self.run()
        return super().result(timeout)


def test_the_first_shard_that_fails_to_write_is_the_one_reported(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "c", [(f"u{k}", 3.0, 22050, 1, "pcm16") for k in range(8)])

    def full_disk(array_dir, shard, *args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer_module, "ThreadPoolExecutor", DeferredExecutor)
    monkeypatch.setattr(writer_module, "write_shard", full_disk)
    # the last utterance completes shard 0 and then shard 1 (frames 2048 on)
    with pytest.raises(StoreError, match="writing shard 0 of .* No space left on device"):
        run_job(corpus, tmp_path / "out.zarr", device="cpu", shard_frames=2048,
                show_progress=False)


def test_an_unwritable_output_is_a_clear_error(tmp_path):
    corpus = write_corpus(tmp_path / "c", [("a", 1.0, 22050, 1, "pcm16")])
    (tmp_path / "file").write_text("x")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    if os.geteuid() == 0:          # root writes through permissions; sysfs refuses even root
        readonly = Path("/sys")
    for parent, words in ((tmp_path / "file", "Not a directory"),
                          (readonly, "ermi")):          # Permission denied / not permitted
        result = run_cli(corpus, parent / "out.zarr")
        assert result.returncode == 2
        assert result.stderr.startswith("tts-extract: error: cannot create output folder")
        assert words in result.stderr and len(result.stderr.splitlines()) == 1


def test_nothing_lands_outside_the_output_folder_whatever_the_ids(tmp_path):
    corpus = write_corpus(tmp_path / "c", [("a", 1.0, 22050, 1, "pcm16")])
    (corpus / "wavs" / "sub").mkdir()
    shutil.copy(corpus / "wavs" / "a.wav", corpus / "wavs" / "sub" / "b.wav")
    (corpus / "metadata.csv").write_text(
        "a|plain|\nsub/../sub/b|dots inside|\n../../../x|escape|\n/tmp/x|absolute|\n"
        "a.wav|again|\n")
    before = {p for p in tmp_path.rglob("*")}
    result = run_cli(corpus, tmp_path / "out" / "s.zarr")
    assert result.returncode == 3, result.stderr
    new = {p for p in tmp_path.rglob("*")} - before
    assert all(p == tmp_path / "out" or (tmp_path / "out" / "s.zarr") in (p, *p.parents)
               for p in new), sorted(new)
    store = FeatureStore(tmp_path / "out" / "s.zarr")
    assert store.ids == ("a", "sub/../sub/b")
    reasons = [r["reason"] for r in store.attrs["rejected"]]
    assert sum("outside" in r for r in reasons) == 2 and any("duplicate" in r for r in reasons)
    assert json.loads((tmp_path / "out" / "s.zarr" / "zarr.json").read_text())
