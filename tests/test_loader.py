import os
import pickle
import random
import re
import resource
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from extract.loader import (FeatureStore, LengthBucketSampler, StoreReplacedError,
                            pad_collate)
from extract.loader.shard_reader import ShardReader, StoreFormatError


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_with_workers(mixed_store, context):
    store = FeatureStore(mixed_store)
    sampler = LengthBucketSampler(store.lengths, batch_size=2, seed=1)
    loader = torch.utils.data.DataLoader(store, batch_sampler=sampler, collate_fn=pad_collate,
                                         num_workers=2, multiprocessing_context=context)
    seen = []
    for batch in loader:
        assert batch["mel"].shape[0] == len(batch["ids"]) == len(batch["lengths"])
        assert batch["mel"].shape[1] == int(batch["lengths"].max())
        assert batch["voiced"].dtype == torch.bool
        for k, utt_id in enumerate(batch["ids"]):
            n = int(batch["lengths"][k])
            direct = store[utt_id]
            torch.testing.assert_close(batch["mel"][k, :n], direct["mel"], rtol=0, atol=0)
            torch.testing.assert_close(batch["f0"][k, :n], direct["f0"], rtol=0, atol=0)
            assert not batch["mel"][k, n:].any()
            seen.append(utt_id)
    assert sorted(seen) == sorted(store.ids)


def test_in_memory_refuses_a_store_larger_than_the_available_memory(mixed_store, monkeypatch):
    import extract.loader.feature_store as feature_store

    available = feature_store.available_memory()
    assert available is not None and 0 < available <= os.sysconf("SC_PHYS_PAGES") * \
        os.sysconf("SC_PAGE_SIZE")
    frames = sum(f.stat().st_size for name in ("mel", "f0", "voiced", "voiced_prob", "energy")
                 for f in (mixed_store / name / "c").rglob("*") if f.is_file())
    monkeypatch.setattr(feature_store, "available_memory", lambda: frames // 2)
    with pytest.raises(MemoryError, match=r"in_memory=True needs [\d.]+ kB for its frames, "
                                          r"and this machine has [\d.]+ kB available"):
        FeatureStore(mixed_store, in_memory=True)
    monkeypatch.setattr(feature_store, "available_memory", lambda: frames * 2)
    store = FeatureStore(mixed_store, in_memory=True)
    assert len(store) == len(FeatureStore(mixed_store))
    copy = pickle.loads(pickle.dumps(store))   # as a worker that reads its own copy
    monkeypatch.setattr(feature_store, "available_memory", lambda: frames // 2)
    with pytest.raises(MemoryError, match="in_memory=True needs"):
        copy[0]
    # memory that runs out while zarr reads is that, not a damaged store
    monkeypatch.setattr(feature_store, "available_memory", lambda: None)
    def out_of_memory(*args):
        raise MemoryError

    monkeypatch.setattr(zarr.Array, "__getitem__", out_of_memory)
    with pytest.raises(MemoryError) as error:
        FeatureStore(mixed_store, in_memory=True)
    assert not isinstance(error.value, StoreFormatError)


def test_forked_workers_share_an_in_memory_store(mixed_store, monkeypatch):
    """in_memory reads at open; workers started by fork serve from those arrays (no worker
    reads the store again, which would hold one copy per worker)."""
    store = FeatureStore(mixed_store, in_memory=True)
    expected = [store[i]["mel"] for i in range(len(store))]

    def refuse(*args, **kwargs):
        raise AssertionError("a worker opened the store again")

    monkeypatch.setattr(zarr, "open_group", refuse)         # forked workers inherit this
    loader = torch.utils.data.DataLoader(store, batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    for i, item in enumerate(loader):
        torch.testing.assert_close(item["mel"], expected[i], rtol=0, atol=0)


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_spawned_workers_map_an_in_memory_store_from_shared_memory(mixed_store, tmp_path,
                                                                   context):
    """Workers started by spawn or forkserver get the in_memory frames as shared memory: they
    serve every utterance after the store's folder is gone, where a worker reading its own
    copy could not. Plain pickling (not a process start) still leaves the frames out."""
    path = tmp_path / "copy.zarr"
    shutil.copytree(mixed_store, path)
    store = FeatureStore(path, in_memory=True)
    expected = {store.ids[i]: store[i] for i in range(len(store))}
    assert len(pickle.dumps(store)) < store.frame_bytes
    shutil.rmtree(path)
    loader = torch.utils.data.DataLoader(store, batch_size=None, num_workers=2,
                                         multiprocessing_context=context)
    served = list(loader)
    assert sorted(item["id"] for item in served) == sorted(expected)
    for item in served:
        for name in store.array_names:
            torch.testing.assert_close(item[name], expected[item["id"]][name], rtol=0, atol=0)
    torch.testing.assert_close(store[0]["mel"], expected[store.ids[0]]["mel"], rtol=0, atol=0)


def test_spawned_workers_read_their_own_copy_where_shared_memory_is_short(mixed_store,
                                                                         monkeypatch):
    import extract.loader.feature_store as feature_store

    store = FeatureStore(mixed_store, in_memory=True)
    monkeypatch.setattr(feature_store, "shared_memory_free", lambda: store.frame_bytes - 1)
    loader = torch.utils.data.DataLoader(store, batch_size=None, num_workers=2,
                                         multiprocessing_context="spawn")
    with pytest.warns(UserWarning, match=r"do not fit the [\d.]+ kB free in /dev/shm, so each "
                                         r"worker started by spawn reads its own copy"):
        served = list(loader)
    assert tuple(item["id"] for item in served) == store.ids
    for i, item in enumerate(served):
        torch.testing.assert_close(item["energy"], store[i]["energy"], rtol=0, atol=0)


def test_a_store_opened_with_features_reads_and_serves_only_those(mixed_store, monkeypatch):
    import extract.loader.feature_store as feature_store

    full, normalized = FeatureStore(mixed_store), FeatureStore(mixed_store, normalize=True)
    mel_bytes = zarr.open_array(mixed_store / "mel", mode="r").nbytes
    monkeypatch.setattr(feature_store, "available_memory", lambda: mel_bytes)
    with pytest.raises(MemoryError, match="in_memory=True needs"):
        FeatureStore(mixed_store, in_memory=True)
    vocoder = FeatureStore(mixed_store, in_memory=True, features=["mel"], mel_layout="bins_first")
    assert vocoder.frame_bytes == mel_bytes
    loader = torch.utils.data.DataLoader(vocoder, batch_size=None, num_workers=1,
                                         multiprocessing_context="spawn")
    for i, item in enumerate(loader):
        assert set(item) == {"id", "text", "mel", "mel_layout"}
        torch.testing.assert_close(item["mel"], full[i]["mel"].T, rtol=0, atol=0)
    with pytest.raises(KeyError, match=r"'f0' is not among the features this store was opened "
                                       r"with, \['mel'\]"):
        vocoder.frames("f0", 0)
    batch = pad_collate([vocoder[0], vocoder[1]])
    assert set(batch) == {"ids", "texts", "lengths", "mel"}
    assert batch["lengths"].tolist() == full.lengths[:2].tolist()
    prosody = FeatureStore(mixed_store, features=("energy", "voiced", "f0"), normalize=True)
    assert prosody.features == ["f0", "voiced", "energy"]
    for i in range(len(full)):
        item, expected = prosody[i], normalized[i]
        assert set(item) == {"id", "text", "f0", "voiced", "energy"}
        for name in prosody.features:
            torch.testing.assert_close(item[name], expected[name], rtol=0, atol=0)
    for features, message in ((["pitch"], r"has no frame array\(s\) \['pitch'\]; it has "
                                          r"\['mel', 'f0', 'voiced', 'voiced_prob', 'energy'\]"),
                              ("mel", r"features must name one or more of .*, got 'mel'"),
                              ((), r"features must name one or more of .*, got \(\)")):
        with pytest.raises(ValueError, match=message):
            FeatureStore(mixed_store, features=features)
    with pytest.raises(ValueError, match="normalize=True sets unvoiced f0 frames to 0, so it "
                                         "needs 'voiced' among the features"):
        FeatureStore(mixed_store, features=["f0"], normalize=True)


def test_length_bucket_sampler_covers_everything_and_groups_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 1000, size=1000)
    sampler = LengthBucketSampler(lengths, batch_size=16, pool_batches=10, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(sampler) == len(batches)
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[rng.choice(1000, 16)]) for _ in range(100)])
    assert spread < random_spread / 4
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert all(len(b) == 16 for b in LengthBucketSampler(lengths, 16, drop_last=True))


def test_the_sampler_counts_the_batches_it_gives_without_making_them(monkeypatch):
    """len(sampler), which a training loop may ask every step, is the number of batches an
    epoch gives, for any corpus size, batch size, pool, drop_last and share of ranks; it does
    not build the epoch's batches (0.17 s a call for a million utterances)."""
    rng = np.random.default_rng(2)
    cases = [(int(rng.integers(1, 300)), int(rng.integers(1, 40)), int(rng.integers(1, 6)),
              bool(rng.integers(2)), int(rng.integers(1, 5))) for _ in range(300)]
    for size, batch_size, pool_batches, drop_last, replicas in cases:
        samplers = [LengthBucketSampler(rng.integers(1, 100, size), batch_size,
                                        drop_last=drop_last, pool_batches=pool_batches,
                                        num_replicas=replicas, rank=rank)
                    for rank in range(replicas)]
        given = [len(list(sampler)) for sampler in samplers]
        with monkeypatch.context() as patched:
            patched.setattr(LengthBucketSampler, "batches", None)
            assert [len(sampler) for sampler in samplers] == given, (size, batch_size,
                                                                     pool_batches, drop_last)


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_of_a_distributed_run_share_each_epoch(drop_last):
    """4 ranks, 1000 utterances in batches of 16 (63 batches, one short): each rank gets the
    same number of batches; without drop_last every utterance is served and only the one batch
    that fills the last round comes twice; with drop_last (60 of the 62 full batches) no
    utterance twice and every batch full. Each epoch shares out a new order."""
    lengths = np.random.default_rng(1).integers(50, 1000, size=1000)
    epochs = []
    for epoch in (0, 1):
        ranks = []
        for rank in range(4):
            sampler = LengthBucketSampler(lengths, 16, drop_last=drop_last, num_replicas=4,
                                          rank=rank)
            sampler.set_epoch(epoch)
            ranks.append(list(sampler))
        assert len({len(batches) for batches in ranks}) == 1
        served = [i for batches in ranks for batch in batches for i in batch]
        counts = np.bincount(served, minlength=len(lengths))
        if drop_last:
            assert counts.max() == 1 and counts.sum() == 60 * 16 and len(ranks[0]) == 15
            assert all(len(batch) == 16 for batches in ranks for batch in batches)
        else:
            assert counts.min() == 1 and counts.max() == 2 and len(ranks[0]) == 16
            assert (counts == 2).sum() in (8, 16)
        epochs.append(ranks)
    assert epochs[0][0] != epochs[1][0]


def test_the_sampler_takes_its_rank_from_torch_distributed(tmp_path):
    """Two processes in a gloo group, the sampler given no rank: their batches are disjoint and
    together cover every utterance once."""
    torch.multiprocessing.spawn(sample_in_a_group, args=(2, str(tmp_path)), nprocs=2)
    shares = [np.load(tmp_path / f"rank{rank}.npy") for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == 20
    assert sorted(np.concatenate(shares).tolist()) == list(range(40))


def sample_in_a_group(rank: int, world_size: int, folder: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous",
                                         rank=rank, world_size=world_size)
    try:
        batches = list(LengthBucketSampler(np.arange(40) % 7, batch_size=4))
        np.save(f"{folder}/rank{rank}.npy", np.concatenate(batches))
    finally:
        torch.distributed.destroy_process_group()


def test_a_rank_outside_the_replicas_is_refused():
    with pytest.raises(ValueError, match=r"rank must be in \[0, num_replicas\), got rank 3"):
        LengthBucketSampler([5, 6], 1, num_replicas=3, rank=3)


@pytest.fixture(params=["preadv", "pread"])
def read_path(request, monkeypatch):
    """Shard reads straight into the output (os.preadv) and, as where os.preadv is missing,
    through os.pread and a copy."""
    if request.param == "pread":
        monkeypatch.delattr(os, "preadv")
    return request.param


@pytest.fixture(scope="module")
def small_shard_store(mixed_corpus, tmp_path_factory) -> Path:
    """mixed_corpus in shards of 8 frames: over 100 shards per array."""
    from extract.job import run_job

    out = tmp_path_factory.mktemp("stores") / "small_shards.zarr"
    run_job(mixed_corpus, out, device="cpu", shard_frames=8, show_progress=False)
    assert zarr.open_array(out / "mel", mode="r").shape[0] // 8 > 100
    return out


def test_random_access_to_many_shards_stays_within_the_open_file_limit(small_shard_store,
                                                                        read_path):
    """A store of over 100 shards per array, read in random order under a limit of 256 open
    files, which one open file per shard and array would pass: every utterance equals
    zarr-python's read of it, and the files left open are few."""
    group = zarr.open_group(str(small_shard_store), mode="r")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        store = FeatureStore(small_shard_store)
        before = len(os.listdir("/proc/self/fd"))
        for i in np.random.default_rng(0).permutation(len(store)):
            item, (start, stop) = store[int(i)], store.offsets[i:i + 2]
            for name in ("mel", "f0", "voiced", "voiced_prob", "energy"):
                np.testing.assert_array_equal(item[name].numpy(), group[name][start:stop])
        assert len(os.listdir("/proc/self/fd")) - before <= 5 * 16
        assert all(isinstance(reader, ShardReader) for reader in store._arrays().values())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_threads_reading_one_store_each_get_their_own_utterances(small_shard_store,
                                                                 monkeypatch):
    """Eight threads read random utterances of one store (a thread-pool prefetcher) while its
    readers keep two shard files open per array, so files are closed and reopened while other
    threads read them (a descriptor closed mid-read could be reused for another file): every
    item equals zarr-python's read of it, and no file is left open beyond those two."""
    import extract.loader.shard_reader as shard_reader

    monkeypatch.setattr(shard_reader, "max_open_shards", lambda: 2)
    store = FeatureStore(small_shard_store)
    group = zarr.open_group(str(small_shard_store), mode="r")
    stored = {name: group[name][:] for name in store.array_names}
    before = len(os.listdir("/proc/self/fd"))

    def differing(seed: int) -> list[str]:
        found = []
        for i in np.random.default_rng(seed).integers(0, len(store), 40):
            item, (start, stop) = store[int(i)], store.offsets[i:i + 2]
            found += [f"{name} of {item['id']}" for name in store.array_names
                      if not np.array_equal(item[name].numpy(), stored[name][start:stop])]
        return found

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(differing, range(16)), []) == []
    assert len(os.listdir("/proc/self/fd")) - before <= 2 * len(store.array_names)


def test_workers_forked_while_a_thread_reads_the_store_start_all_the_same(mixed_store):
    """A DataLoader forks its workers while another thread is inside a read (its readers'
    locks held, as the fork copies them): each worker drops the readers it inherited, which
    must not wait for those locks, and reads with its own."""
    store = FeatureStore(mixed_store)
    expected = store[0]["mel"]
    locks = [reader.lock for reader in store._arrays().values()]
    for lock in locks:
        lock.acquire()
    try:
        loader = torch.utils.data.DataLoader(store, batch_size=None, num_workers=1,
                                             multiprocessing_context="fork", timeout=30)
        item = next(iter(loader))
    finally:
        for lock in locks:
            lock.release()
    torch.testing.assert_close(item["mel"], expected, rtol=0, atol=0)


def test_a_store_opened_by_a_relative_path_reads_after_the_working_directory_changes(
        mixed_store, tmp_path, monkeypatch):
    """Training scripts change directory after building their datasets (Hydra's run folder):
    the store's files are still found, not taken as missing or replaced."""
    monkeypatch.chdir(mixed_store.parent)
    store = FeatureStore(mixed_store.name)
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(store[0]["mel"].numpy(),
                                  FeatureStore(mixed_store)[0]["mel"].numpy())


def test_a_store_replaced_after_it_was_opened_is_refused_not_read_by_the_old_index(
        reference, mixed_store, tmp_path):
    """A store opened by a training loop, then replaced by another corpus's (as `tts-extract
    run --overwrite` replaces it): reads that open its new files would take them at the old
    offsets. Each is refused instead; a store opened afresh reads the new one."""
    path = tmp_path / "features.zarr"
    shutil.copytree(reference, path)
    store = FeatureStore(path)
    shutil.rmtree(path)
    shutil.copytree(mixed_store, path)
    for i in (0, len(store) - 1):
        with pytest.raises(StoreReplacedError, match="replaced, moved or deleted after it was"):
            store[i]
    np.testing.assert_array_equal(FeatureStore(path)[0]["mel"].numpy(),
                                  FeatureStore(mixed_store)[0]["mel"].numpy())


def test_workers_started_after_an_overwrite_refuse_the_new_store(corpus, tmp_path):
    """The store extracted again with --overwrite between two epochs: the next epoch's
    DataLoader workers, forked with the old index, refuse the new files."""
    from extract.cli import main

    path = tmp_path / "features.zarr"
    assert main(["run", str(corpus), str(path), "--device", "cpu", "--limit", "12",
                 "--quiet"]) == 0
    store = FeatureStore(path)
    loader = torch.utils.data.DataLoader(store, batch_size=None, num_workers=1,
                                         multiprocessing_context="fork", timeout=60)
    assert [item["id"] for item in loader] == list(store.ids)
    assert main(["run", str(corpus), str(path), "--device", "cpu", "--limit", "20",
                 "--overwrite", "--quiet"]) == 0
    assert len(FeatureStore(path)) == 20
    with pytest.raises(StoreReplacedError, match="open it again"):
        next(iter(loader))


def test_a_store_replaced_while_it_is_opened_is_refused(reference, mixed_store, tmp_path,
                                                        monkeypatch):
    """Replaced between reading its record and its index: not an index made of two stores."""
    path = tmp_path / "features.zarr"
    shutil.copytree(reference, path)
    check = FeatureStore._check_consistency

    def replace_then_check(self, arrays, fields):
        shutil.rmtree(path)
        shutil.copytree(mixed_store, path)
        check(self, arrays, fields)

    monkeypatch.setattr(FeatureStore, "_check_consistency", replace_then_check)
    with pytest.raises(StoreReplacedError):
        FeatureStore(path)


def test_a_store_whose_root_file_only_got_a_new_inode_is_read_on(mixed_store, tmp_path):
    """FUSE mounts (rclone's, for one) may give an unchanged file a new inode number: the
    same zarr.json, size and modification time, under a new inode, is not a replacement."""
    path = tmp_path / "features.zarr"
    shutil.copytree(mixed_store, path)
    store = FeatureStore(path)
    root = path / "zarr.json"
    inode = root.stat().st_ino
    shutil.copy2(root, tmp_path / "zarr.json")       # copy2 keeps the modification time
    os.replace(tmp_path / "zarr.json", root)
    assert root.stat().st_ino != inode
    np.testing.assert_array_equal(store[0]["mel"].numpy(),
                                  FeatureStore(mixed_store)[0]["mel"].numpy())


def test_a_resume_of_the_complete_store_leaves_its_readers_reading(corpus, tmp_path):
    """`tts-extract run --resume` on a finished store changes nothing, and its open readers
    go on (its lock file is written; the store's own files are not)."""
    from extract.cli import main

    path = tmp_path / "features.zarr"
    args = ["run", str(corpus), str(path), "--device", "cpu", "--limit", "12", "--quiet"]
    assert main(args) == 0
    store = FeatureStore(path)
    assert main([*args, "--resume"]) == 0
    group = zarr.open_group(str(path), mode="r")
    for i in range(len(store)):
        start, stop = store.offsets[i:i + 2]
        np.testing.assert_array_equal(store[i]["mel"].numpy(), group["mel"][start:stop])


def test_a_store_names_itself_and_the_options_it_was_opened_with(mixed_store):
    """What a notebook or a log shows for the dataset: path, size, preset and any option that
    is not the default."""
    offsets = zarr.open_array(mixed_store / "offsets", mode="r")[:]
    assert repr(FeatureStore(mixed_store)) == (f"<FeatureStore {mixed_store}: {len(offsets) - 1} "
                                               f"utterances, {offsets[-1]} frames, preset "
                                               "'hifigan'>")
    assert repr(FeatureStore(mixed_store, mel_layout="bins_first", features=["mel"])).endswith(
        "preset 'hifigan', mel_layout='bins_first', features=['mel']>")


def test_item_access_by_position_and_id(mixed_store):
    store = FeatureStore(mixed_store)
    assert store[-1]["id"] == store.ids[-1]
    torch.testing.assert_close(store["c"]["mel"], store[2]["mel"])
    with pytest.raises(KeyError, match="no utterance"):
        store["nope"]
    with pytest.raises(IndexError):
        store[len(store)]
    assert store[np.int64(1)]["id"] == store[torch.tensor(1)]["id"] == store.ids[1]
    with pytest.raises(TypeError, match=r"position \(int\), not float"):
        store[1.5]
    with pytest.raises(TypeError):      # shuffled in place, frames would get other ids and texts
        random.shuffle(store.ids)
    offsets = zarr.open_array(mixed_store / "offsets", mode="r")[:]
    assert store.lengths is store.lengths                # made once: indexed per utterance
    np.testing.assert_array_equal(store.lengths, offsets[1:] - offsets[:-1])
    with pytest.raises(ValueError, match="read-only"):
        store.lengths[0] = 0


@pytest.mark.parametrize("in_memory", [False, True])
def test_an_item_changed_in_place_leaves_the_store_as_it_was(mixed_store, in_memory):
    """Training code may change an item's tensors in place (SpecAugment's masks); the next
    read of that utterance still gives what the store holds."""
    store = FeatureStore(mixed_store, in_memory=in_memory)
    frames = slice(int(store.offsets[1]), int(store.offsets[2]))
    stored = {name: zarr.open_array(mixed_store / name, mode="r")[frames]
              for name in store.array_names}
    item = store[1]
    for name in store.array_names:
        tensor = item[name]
        tensor.copy_(~tensor if tensor.dtype == torch.bool else tensor + 1)
    again = store[1]
    for name in store.array_names:
        np.testing.assert_array_equal(again[name].numpy(), stored[name], err_msg=name)


def test_check_config_names_each_setting_that_differs_from_a_vocoders(mixed_store):
    store = FeatureStore(mixed_store)
    # jik876/hifi-gan config_v1.json: the default preset's vocoder
    store.check_config(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024,
                       n_mels=80, fmin=0, fmax=8000)
    # NVIDIA/BigVGAN bigvgan_v2_22khz_80band_256x: fmax null, that is sr / 2
    with pytest.raises(ValueError, match=r"\(preset 'hifigan'\) does not match: "
                                         r"fmax is 8000.0, not 11025.0$"):
        store.check_config(sample_rate=22050, hop_length=256, n_mels=80, fmax=11025.0)
    with pytest.raises(ValueError, match="config has no hop_size, num_mels; it has name, "):
        store.check_config(num_mels=80, hop_size=256)


def test_a_shard_file_cut_short_while_the_store_is_open_is_named(mixed_store, tmp_path,
                                                                  read_path):
    path = tmp_path / "copy.zarr"
    shutil.copytree(mixed_store, path)
    store = FeatureStore(path)
    store[0]                                          # the shard's index is read and kept
    shard = path / "mel" / "c" / "0" / "0"
    os.truncate(shard, 1000)
    with pytest.raises(StoreFormatError, match=rf"shard file {re.escape(str(shard))} ended "
                                               r"early: was it changed while the store was "
                                               r"open\?"):
        store[0]
