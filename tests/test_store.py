import errno
import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
import zarr

from extract.config import load_preset
from extract.loader import FeatureStore, StoreFormatError
from extract.store.layout import ATTRS_KEY, shard_file
from extract.store import lock
from extract.store.lock import LOCK_NAME, StoreLock, StoreLockedError, running_owner
from extract.store.index import UtteranceIndex
from extract.store.output import StoreError, open_output
from extract.store.shard_file import write_shard
from extract.store.writer import QUEUED_SHARDS, StoreWriter

from conftest import MIXED_SPECS, ROOT, write_corpus


@pytest.mark.parametrize("dtype,trailing", [("float32", (5,)), ("float32", ()), ("bool", ())])
def test_shard_files_are_the_bytes_zarr_python_writes(tmp_path, dtype, trailing):
    """Full shards and a last one that ends inside a chunk, against zarr-python writing the
    same rows into an array of the same metadata; zarr then reads ours (checking the index's
    crc32c)."""
    frames, chunk, shard = 2 * 64 + 40, 16, 64
    rows = np.random.default_rng(0).standard_normal((frames, *trailing)) > 0 if dtype == "bool" \
        else np.random.default_rng(0).standard_normal((frames, *trailing)).astype(dtype)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=3)
    arrays = [group.create_array(name, shape=rows.shape, dtype=dtype, chunks=(chunk, *trailing),
                                 shards=(shard, *trailing), compressors=None, fill_value=0,
                                 config={"write_empty_chunks": True})
              for name in ("theirs", "ours")]
    for k in range(3):
        lo, hi = k * shard, min((k + 1) * shard, frames)
        arrays[0][lo:hi] = rows[lo:hi]
        write_shard(tmp_path / "s.zarr" / "ours", k, rows[lo:hi], chunk, shard)
        files = [shard_file(tmp_path / "s.zarr" / name, k, rows.ndim)
                 for name in ("theirs", "ours")]
        assert files[1].read_bytes() == files[0].read_bytes()
    np.testing.assert_array_equal(arrays[1][:], rows)


def test_frame_counts_offsets_and_spans_follow_the_audio(mixed_store, mixed_corpus):
    store = FeatureStore(mixed_store)
    samples = [torchaudio.functional.resample(
        torch.from_numpy(sf.read(mixed_corpus / "wavs" / f"{utt_id}.wav")[0].T), rate, 22050
    ).shape[-1] for utt_id, _, rate, _, _ in MIXED_SPECS]
    assert store.spans.tolist() == [[0, n] for n in samples]
    expected = [n // 256 for n in samples]
    assert store.lengths.tolist() == expected
    assert store.offsets[0] == 0 and store.offsets[-1] == sum(expected)
    for i in range(len(store)):
        item = store[i]
        assert item["mel"].shape == (expected[i], 80)
        assert item["f0"].shape == item["voiced"].shape == item["energy"].shape == (expected[i],)


def test_store_round_trip_ids_texts_config_stats(mixed_store):
    store = FeatureStore(mixed_store)
    assert store.ids == tuple(s[0] for s in MIXED_SPECS)
    assert store["c"]["text"] == "Normalized c."
    assert store.config["n_mels"] == 80 and store.config["frame_count_rule"]
    assert store.config["frame_center_offset_s"] == pytest.approx(128 / 22050)
    mel = np.concatenate([store[i]["mel"].numpy() for i in range(len(store))])
    f0 = np.concatenate([store[i]["f0"].numpy() for i in range(len(store))])
    voiced = np.concatenate([store[i]["voiced"].numpy() for i in range(len(store))])
    energy = np.concatenate([store[i]["energy"].numpy() for i in range(len(store))])
    s = store.stats
    np.testing.assert_allclose(s["mel_mean"], mel.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(s["mel_std"], mel.astype(np.float64).std(0), rtol=1e-5)
    assert s["f0_mean"] == pytest.approx(f0[voiced].mean(), rel=1e-6)
    assert s["f0_std"] == pytest.approx(f0[voiced].std(), rel=1e-5)
    assert s["energy_mean"] == pytest.approx(energy.mean(), rel=1e-6)
    assert not f0[~voiced].any() and (f0[voiced] > 0).all()
    attrs = store.attrs
    assert attrs["manifest_sha256"] and attrs["versions"]["zarr"] == zarr.__version__


def test_numeric_arrays_open_with_tensorstore(mixed_store):
    ts = pytest.importorskip("tensorstore")
    group = zarr.open_group(str(mixed_store), mode="r")
    for name in ("mel", "f0", "voiced", "voiced_prob", "energy", "offsets", "spans"):
        array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file",
                                                        "path": str(mixed_store / name)}}).result()
        np.testing.assert_array_equal(array.read().result(), group[name][:])
        assert list(array.domain.labels) == list(group[name].metadata.dimension_names)


def test_everything_opens_with_plain_zarr_without_our_package(mixed_store):
    code = f"""
import sys
sys.modules["extract"] = None          # any import of our package now fails
import json, zarr, numpy as np
g = zarr.open_group({str(mixed_store)!r}, mode="r")
meta = g.attrs["{ATTRS_KEY}"]
assert meta["complete"] is True
ids = list(g["utterances/id"][:]); texts = list(g["utterances/text"][:])
off = g["offsets"][:]
i = ids.index("b")
mel = g["mel"][off[i]:off[i + 1]]
print(json.dumps({{"ids": [str(x) for x in ids], "text": str(texts[i]), "frames": len(mel),
                  "n_mels": mel.shape[1], "hop": meta["config"]["hop_length"]}}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                    capture_output=True, text=True).stdout)
    store = FeatureStore(mixed_store)
    assert out == {"ids": list(store.ids), "text": "Normalized b.", "frames": len(store["b"]["f0"]),
                   "n_mels": 80, "hop": 256}


@pytest.mark.parametrize("in_memory", [False, True])
def test_writer_and_reader_across_many_small_shards(tmp_path, in_memory):
    """Utterances straddle chunk and shard edges and arrive out of order; some chunks are all
    zero. Reads must return exactly what was written, and the statistics (per speaker too, with
    several speakers in most shards) must be those of the frames written."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 90, size=40)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = [f"utt{i}" for i in range(40)]
    speakers = [str(name) for name in rng.choice(["ann", "bob", "", "cy"], size=40)]
    features = []
    for n in lengths:
        voiced = rng.random(n) < 0.5
        features.append({"mel": rng.standard_normal((n, 5)).astype(np.float32),
                         "f0": np.where(voiced, rng.uniform(80, 300, n), 0).astype(np.float32),
                         "voiced": voiced, "voiced_prob": rng.random(n).astype(np.float32),
                         "energy": rng.random(n).astype(np.float32)})
    features[3]["f0"][:] = 0
    spans = np.stack([np.zeros(40), lengths * 256], axis=1)
    w = StoreWriter(tmp_path / "s.zarr",
                    UtteranceIndex(offsets, spans, {"id": ids, "text": [f"t{i}" for i in ids],
                                                    "audio": [f"{i}.wav" for i in ids],
                                                    "speaker": speakers}),
                    {"n_mels": 5}, {"config": {**load_preset("hifigan").to_dict(), "n_mels": 5},
                                    "manifest_sha256": "x", "versions": {}},
                    chunk_frames=16, shard_frames=64)
    for i in rng.permutation(40):
        w.add(int(i), features[i])
        assert len(w.buffers) <= w.num_shards and len(w._queued) <= QUEUED_SHARDS
    w.finish({})
    store = FeatureStore(tmp_path / "s.zarr", in_memory=in_memory)
    np.testing.assert_array_equal(store.spans, spans)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group["mel"].shards == (64, 5) and group["mel"].chunks == (16, 5)
    for i in rng.permutation(40):
        item = store[ids[i]]
        for name, value in features[i].items():
            np.testing.assert_array_equal(item[name].numpy(), value)
            np.testing.assert_array_equal(group[name][offsets[i]:offsets[i + 1]], value)
    everything = {name: np.concatenate([f[name] for f in features]).astype(np.float64)
                  for name in ("mel", "f0", "energy")}
    np.testing.assert_allclose(store.stats["mel_mean"], everything["mel"].mean(axis=0))
    np.testing.assert_allclose(store.stats["mel_std"], everything["mel"].std(axis=0))
    assert list(store.stats["speakers"]) == list(dict.fromkeys(speakers))
    for speaker, stats in store.stats["speakers"].items():
        theirs = [f for f, s in zip(features, speakers) if s == speaker]
        f0, energy = (np.concatenate([f[name][f["voiced"]] for f in theirs]).astype(np.float64)
                      for name in ("f0", "energy"))
        assert stats["f0_voiced_frames"] == len(f0)
        np.testing.assert_allclose([stats["f0_mean"], stats["f0_std"]], [f0.mean(), f0.std()])
        np.testing.assert_allclose([stats["energy_voiced_mean"], stats["energy_voiced_std"]],
                                   [energy.mean(), energy.std()])


def test_unfinished_store_is_refused(tmp_path):
    """With how far its job got: 3 utterances of 4 frames in shards of 4, one written."""
    w = StoreWriter(tmp_path / "s.zarr",
                    UtteranceIndex(np.array([0, 4, 8, 12]), np.array([[0, 1024]] * 3),
                                   {"id": ["a", "b", "c"], "text": ["t"] * 3,
                                    "audio": ["a.wav", "b.wav", "c.wav"]}),
                    {"n_mels": 3}, {"config": {}, "manifest_sha256": "x", "versions": {}},
                    chunk_frames=4, shard_frames=4)
    with pytest.raises(StoreFormatError, match="incomplete: the job that wrote it did not "
                                               "finish, 0 of 3 shards written; .*--resume"):
        FeatureStore(tmp_path / "s.zarr")
    w.add(1, {"mel": np.ones((4, 3), np.float32), "f0": np.ones(4, np.float32),
              "voiced": np.ones(4, bool), "voiced_prob": np.ones(4, np.float32),
              "energy": np.ones(4, np.float32)})
    w.wait()
    with StoreLock(tmp_path / "s.zarr"):                    # as a running job holds it
        with pytest.raises(StoreFormatError, match=f"incomplete: a job is still writing it "
                                                   f"\\(pid {os.getpid()} on .*, 1 of 3 shards "
                                                   "written\\); open it once"):
            FeatureStore(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="never completed"):
        w.finish({})
    with pytest.raises(StoreFormatError, match="incomplete"):
        FeatureStore(tmp_path / "s.zarr")


def test_a_starting_job_waits_out_readers_but_not_a_job(tmp_path, monkeypatch):
    """A reader's momentary shared lock (running_owner) does not refuse a job that starts in
    that instant; a running job's lock refuses it at once, and a reader that keeps its shared
    lock past READERS_WAIT_S does too."""
    folder = tmp_path / "s.zarr"
    folder.mkdir()
    with open(folder / LOCK_NAME, "a+") as reader:
        fcntl.flock(reader, fcntl.LOCK_SH)
        threading.Timer(0.2, fcntl.flock, (reader, fcntl.LOCK_UN)).start()
        with StoreLock(folder):
            pass
        with StoreLock(folder):
            started = time.monotonic()
            with pytest.raises(StoreLockedError, match=f"another tts-extract job \\(pid "
                                                       f"{os.getpid()} "):
                StoreLock(folder).acquire()
            assert time.monotonic() - started < lock.READERS_WAIT_S / 2
        monkeypatch.setattr(lock, "READERS_WAIT_S", 0.1)
        fcntl.flock(reader, fcntl.LOCK_SH)
        with pytest.raises(StoreLockedError):
            StoreLock(folder).acquire()


def failing_flock(error: int):
    def flock(file, operation):
        raise OSError(error, os.strerror(error))
    return flock


@pytest.mark.parametrize("error", [errno.ENOSYS, errno.ENOLCK])
def test_filesystem_without_locks_is_named_with_the_fix(tmp_path, monkeypatch, error):
    """Lustre without -o flock says ENOSYS, NFS without lockd ENOLCK: the job stops with what
    is wrong and where to write instead; a reader takes the store as held by no job."""
    monkeypatch.setattr(fcntl, "flock", failing_flock(error))
    out = tmp_path / "out.zarr"
    with pytest.raises(StoreError, match=f"cannot lock {re.escape(str(out))}.*does not support "
                                         f"flock \\({os.strerror(error)}\\).*Lustre mounted "
                                         "with -o flock"):
        open_output(out, overwrite=False, resume=False)
    assert running_owner(out) is None
    monkeypatch.setattr(fcntl, "flock", failing_flock(errno.EIO))
    with pytest.raises(StoreError, match="cannot write to .*Input/output error"):
        open_output(out, overwrite=False, resume=False)


def test_existing_output_is_refused_and_foreign_folders_never_deleted(tmp_path, mixed_store):
    """A folder with other files, or another program's Zarr group (attributes of its own), is
    never touched; only a bare group (a job killed as it created the store) counts as empty."""
    (tmp_path / "store.zarr").mkdir()
    (tmp_path / "store.zarr" / "keep.txt").write_text("mine")
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w").attrs["theirs"] = 1
    for folder in ("store.zarr", "group.zarr"):
        for overwrite, resume in ((False, False), (True, False), (False, True)):
            with pytest.raises(StoreError, match="not a tts-extract store"):
                open_output(tmp_path / folder, overwrite, resume)
    assert (tmp_path / "store.zarr" / "keep.txt").read_text() == "mine"
    assert zarr.open_group(str(tmp_path / "group.zarr"), mode="r").attrs["theirs"] == 1
    with pytest.raises(StoreError, match="already holds a finished store; pass --overwrite"):
        open_output(mixed_store, overwrite=False, resume=False)


def test_all_silent_corpus_gives_unvoiced_pitch_and_null_f0_stats(tmp_path):
    from extract.input.audio import write_wav
    from extract.job import run_job

    (tmp_path / "c" / "wavs").mkdir(parents=True)
    write_wav(tmp_path / "c" / "wavs" / "quiet.wav", np.zeros(22050), 22050)
    (tmp_path / "c" / "metadata.csv").write_text("quiet|shh|\n")
    run_job(tmp_path / "c", tmp_path / "q.zarr", device="cpu", show_progress=False)
    store = FeatureStore(tmp_path / "q.zarr")
    item = store["quiet"]
    assert not item["voiced"].any() and not item["f0"].any()
    assert (item["mel"] == np.log(1e-5)).all()          # sqrt(1e-9) summed stays under the floor
    assert store.stats["f0_mean"] is None and "f0 mean n/a" in store.describe()
    assert "audio: 1.0 s\n" in store.describe()       # of the file, not of its 86 frames


def test_a_corpus_without_any_text_stores_its_empty_texts(tmp_path):
    """Lines with no text (a vocoder's corpus): the text array's one chunk holds only zarr's
    fill value, and is written all the same, since the loader takes a missing chunk for damage
    (a store copied in part)."""
    from extract.job import run_job

    corpus = write_corpus(tmp_path / "c", MIXED_SPECS[:2], lj_style=False)
    (corpus / "metadata.csv").write_text("".join(f"{spec[0]}.wav||\n" for spec in MIXED_SPECS[:2]))
    run_job(corpus, tmp_path / "t.zarr", device="cpu", show_progress=False)
    assert zarr.open_array(tmp_path / "t.zarr" / "utterances" / "text").nchunks_initialized == 1
    assert FeatureStore(tmp_path / "t.zarr").texts == ("", "")


def format_doc_rows(section: str) -> dict[str, str]:
    """docs/FORMAT.md's table under `## section`: {first backticked name of a row: the row}."""
    text = (ROOT / "docs" / "FORMAT.md").read_text().split(f"\n## {section}\n")[1]
    rows = {}
    for line in text.split("\n## ")[0].splitlines():
        name = re.match(r"\| `([^`]+)`", line)
        if name:
            rows[name.group(1)] = line
    return rows


@pytest.mark.filterwarnings("ignore:Object at .tts_extract.lock is not recognized")
def test_format_doc_names_every_array_and_attribute_a_store_holds(tmp_path):
    """A store with every optional part (the vits preset's linear spectrogram, speakers) holds
    exactly the arrays and attribute keys docs/FORMAT.md lists, and each key inside `config`,
    `stats` and `run` is named in its row."""
    from extract.job import run_job

    corpus = write_corpus(tmp_path / "c", [("a", 1.0, 22050, 1, "pcm16"),
                                           ("b", 1.2, 22050, 1, "pcm16")])
    lines = (corpus / "metadata.csv").read_text().splitlines()
    (corpus / "metadata.csv").write_text(f"{lines[0]}|ann\n{lines[1]}|bob\n")
    run_job(corpus, tmp_path / "s.zarr", preset="vits", device="cpu", show_progress=False)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    held = {name for name, _ in group.arrays()}
    held |= {f"utterances/{name}" for name, _ in group["utterances"].arrays()}
    assert held == set(format_doc_rows("Arrays"))

    attributes = format_doc_rows("Attributes")
    meta = group.attrs[ATTRS_KEY]
    assert set(meta) == set(attributes) - {"compacting"}      # compacting: only mid-removal
    nested = {"config": set(meta["config"]) | set(meta["config"]["pitch"]),
              "stats": set(meta["stats"]).union(*map(set, meta["stats"]["speakers"].values())),
              "run": set(meta["run"])}
    for key, names in nested.items():
        named = set(re.findall(r"`([^`]+)`", attributes[key]))
        assert names <= named, f"docs/FORMAT.md's `{key}` row lacks {sorted(names - named)}"
