"""Batches sized so that memory stays bounded: fewer files where they are long, a default that
fits the GPU's memory, and a way out (a smaller --batch-size, --resume) when memory runs out (the
GPU's or the host's, in torch or in DALI)."""

import functools
import re

import numpy as np
import pytest
import soundfile
import torch

import extract.decode.dali
import extract.job
import extract.plan
from extract.config import load_preset
from extract.decode.dali import DecoderOutOfMemory, decode_batches
from extract.distributed import Ranks
from extract.input.audio import write_wav
from extract.job import run_job
from extract.loader import FeatureStore
from extract.loader.feature_store import StoreFormatError
from extract.plan import (GPU_BYTES_PER_FRAME, LONG_UTTERANCE_S, batch_size_for_memory,
                          batch_sizes, default_batch_size)

from conftest import raw_wav, write_corpus


def test_batch_sizes_keep_short_utterances_whole_and_bound_long_ones():
    assert batch_sizes([LONG_UTTERANCE_S] * 50, 16) == [16, 16, 16, 2]
    assert batch_sizes([2 * LONG_UTTERANCE_S + 1] * 8, 16) == [4, 4]
    assert batch_sizes([100 * LONG_UTTERANCE_S] * 3, 16) == [1, 1, 1]

    rng = np.random.default_rng(0)
    windows = [np.sort(rng.choice([5, 12, 40, 90, 300, 900], 40)) for _ in range(6)]
    durations = np.concatenate(windows).tolist()
    batch, budget = 32, 32 * LONG_UTTERANCE_S
    sizes = batch_sizes(durations, batch)
    assert sum(sizes) == len(durations)
    starts = np.cumsum([0] + sizes[:-1])
    for start, size in zip(starts, sizes):
        rows = durations[start:start + size]
        assert size == 1 or size * max(rows) <= budget
        whole = min(len(durations) - start, batch)
        if size < whole:                  # halving stopped at the first size that fits
            assert size in (batch >> k for k in range(6))
            assert 2 * size * max(durations[start:start + 2 * size]) > budget


def test_decoded_batches_follow_the_sizes_and_a_corrupt_file_is_isolated(tmp_path):
    lengths = [900, 1400, 700, 2000, 1100, 1600, 500]
    rng = np.random.default_rng(1)
    paths, expected = [], {}
    for k, n in enumerate(lengths):
        paths.append(tmp_path / f"{k}.wav")
        write_wav(paths[k], rng.uniform(-0.5, 0.5, n), 16000, "float32")
        expected[10 + k] = soundfile.read(paths[k], dtype="float32")[0]
    # a header the decoder rejects (2000 channels), in the second batch of the run of 2s
    paths[2].write_bytes(raw_wav(1, 2000, 16000, 16, bytes(2000 * 2 * 700)))
    batches = list(decode_batches(paths, [10 + k for k in range(7)], [2, 2, 1, 1, 1],
                                  torch.device("cpu"), 2))

    assert [b.indices for b in batches] == [[10, 11], [13], [14], [15], [16]]
    assert [index for b in batches for index, _ in b.failed] == [12]
    assert str(paths[2]) in batches[1].failed[0][1]
    for b in batches:
        assert b.audio.shape == (len(b.indices), int(b.lengths.max()))
        for row, index in enumerate(b.indices):
            n = len(expected[index])
            assert int(b.lengths[row]) == n
            np.testing.assert_array_equal(b.audio[row, :n].numpy(), expected[index])
            assert not b.audio[row, n:].any()


def test_the_job_featurises_long_utterances_in_smaller_batches(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "c", [(f"s{k}", 0.3, 22050, 1, "pcm16") for k in range(4)] +
                          [(f"l{k}", 1.0, 22050, 1, "pcm16") for k in range(3)])
    monkeypatch.setattr(extract.plan, "LONG_UTTERANCE_S", 0.5)     # batches of at most 2 s
    seen, featurise = [], extract.job._featurise
    monkeypatch.setattr(extract.job, "_featurise",
                        lambda indices, *rest: seen.append(len(indices)) or
                        featurise(indices, *rest))
    run_job(corpus, tmp_path / "out.zarr", device="cpu", batch_size=4, show_progress=False)
    assert seen == [4, 2, 1]


def test_the_gpu_batch_size_is_the_largest_power_of_two_up_to_256_whose_bound_fits():
    frames_per_s = 22050 / 256
    slot = LONG_UTTERANCE_S * frames_per_s * GPU_BYTES_PER_FRAME    # one utterance at the bound
    for memory in (0.5 * slot, 3 * slot, 100 * slot, 255.9 * slot, 256 * slot, 10_000 * slot):
        size = batch_size_for_memory(memory, frames_per_s)
        assert size in (1, 2, 4, 8, 16, 32, 64, 128, 256)
        assert size == 1 or size * slot <= memory
        assert size == 256 or 2 * size * slot > memory
    assert batch_size_for_memory(0.5 * slot, frames_per_s) == 1
    assert batch_size_for_memory(255.9 * slot, frames_per_s) == 128


def test_the_default_batch_size_follows_the_gpu_memory_and_the_ranks_sharing_it(monkeypatch):
    hifigan = load_preset("hifigan")
    assert default_batch_size(hifigan, torch.device("cpu")) == 32

    class Properties:
        total_memory = 0

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda", 0)
    sizes = {}
    for gigabytes in (12, 16, 24, 32, 40, 80, 141):
        Properties.total_memory = gigabytes * 2**30
        sizes[gigabytes] = default_batch_size(hifigan, cuda)
    # the H200 measurement behind GPU_BYTES_PER_FRAME: 26.8 GB in use at 256, 13.5 GB at 128,
    # against 80 % of each memory size
    assert sizes == {12: 64, 16: 128, 24: 128, 32: 256, 40: 256, 80: 256, 141: 256}
    # 3 local ranks on 2 GPUs: ranks 0 and 2 take turns on GPU 0, rank 1 has GPU 1
    assert [Ranks(r, 3, r, 3).sharing_gpu() for r in range(3)] == [2, 1, 2]
    assert Ranks().sharing_gpu() == 1
    Properties.total_memory = 40 * 2**30
    assert default_batch_size(hifigan, cuda, Ranks(0, 3, 0, 3)) == 128


def failing_on_the_second_call(function, error: Exception):
    calls = []

    def call(*args):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return function(*args)

    return call


def assert_stops_with_the_fix_then_resumes(tmp_path, monkeypatch, corpus, memory: str):
    """Run with --batch-size 2 into an error that names `memory` and the fix, then follow it."""
    out = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match=rf"^{re.escape(memory)} ran out with --batch-size 2 "
                                           r".*rerun with --resume --batch-size 1$"):
        run_job(corpus, out, device="cpu", batch_size=2, show_progress=False)
    with pytest.raises(StoreFormatError, match="incomplete"):
        FeatureStore(out)
    monkeypatch.undo()
    result = run_job(corpus, out, device="cpu", batch_size=1, resume=True, show_progress=False)
    assert result.utterances == 6 and not result.rejected
    assert FeatureStore(out).attrs["run"]["batch_size"] == 1


# torch's errors when the GPU's memory and the host's ran out (the second under a memory limit)
TORCH_GPU_OUT_OF_MEMORY = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
TORCH_HOST_OUT_OF_MEMORY = RuntimeError(
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 169344000 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("error, memory", [(TORCH_GPU_OUT_OF_MEMORY, "the GPU's memory"),
                                           (TORCH_HOST_OUT_OF_MEMORY, "host memory")],
                         ids=["GPU", "host"])
def test_running_out_of_memory_names_the_fix_and_the_store_resumes(tmp_path, monkeypatch, error,
                                                                   memory):
    corpus = write_corpus(tmp_path / "c", [(f"u{k}", 0.4, 22050, 1, "pcm16") for k in range(6)])
    monkeypatch.setattr(extract.job, "extract_features",
                        failing_on_the_second_call(extract.job.extract_features, error))
    assert_stops_with_the_fix_then_resumes(tmp_path, monkeypatch, corpus, memory)


# DALI 2.4's error when the host allocation of a batch failed (under a memory limit, here), and
# a GPU allocation failure as DALI reports it (NVIDIA/DALI#144)
DALI_HOST_OUT_OF_MEMORY = RuntimeError(
    "Critical error in pipeline:\nError in CPU operator `nvidia.dali.fn.readers.file`,\nwhich "
    "was used in the pipeline definition with the following traceback:\n\n  File "
    "\"extract/decode/dali.py\", line 75, in pipeline\n\nencountered:\n\nstd::bad_alloc\n"
    "Current pipeline object is no longer valid.")
DALI_GPU_OUT_OF_MEMORY = RuntimeError("Critical error in pipeline: CUDA allocation failed\n"
                                      "Current pipeline object is no longer valid.")


@pytest.mark.parametrize("error, memory", [(DALI_HOST_OUT_OF_MEMORY, "host"),
                                           (DALI_GPU_OUT_OF_MEMORY, "GPU")],
                         ids=["host", "GPU"])
def test_the_decoder_running_out_of_memory_skips_no_file_and_names_the_fix(tmp_path, monkeypatch,
                                                                           error, memory):
    """A failed allocation is no file's fault: rather than isolate the batch's files as for a
    decoder failure (which would decode them one at a time, or skip them), the job stops with
    the fix and keeps its finished shards."""
    corpus = write_corpus(tmp_path / "c", [(f"u{k}", 0.4, 22050, 1, "pcm16") for k in range(6)])
    build = extract.decode.dali._pipeline
    # the second run() of any pipeline: counted across the pipelines the job builds
    run = failing_on_the_second_call(lambda run_pipeline: run_pipeline(), error)

    def pipeline(*args):
        pipe = build(*args)
        pipe.run = functools.partial(run, pipe.run)
        return pipe

    monkeypatch.setattr(extract.decode.dali, "_pipeline", pipeline)
    assert_stops_with_the_fix_then_resumes(tmp_path, monkeypatch, corpus,
                                           f"the audio decoder's (DALI's) {memory} memory")


def test_running_out_of_memory_while_isolating_a_corrupt_file_blames_no_file(tmp_path,
                                                                              monkeypatch):
    paths = [tmp_path / "good.wav", tmp_path / "corrupt.wav"]
    write_wav(paths[0], np.zeros(800), 16000, "pcm16")
    paths[1].write_bytes(raw_wav(1, 2000, 16000, 16, bytes(2000 * 2 * 700)))
    build = extract.decode.dali._pipeline

    def pipeline(paths, indices, batch_size, *args):
        pipe = build(paths, indices, batch_size, *args)
        if batch_size == 1:           # decoding one file at a time, to find the culprit
            pipe.run = failing_on_the_second_call(pipe.run, DALI_GPU_OUT_OF_MEMORY)
        return pipe

    monkeypatch.setattr(extract.decode.dali, "_pipeline", pipeline)
    with pytest.raises(DecoderOutOfMemory, match="GPU memory"):
        list(decode_batches(paths, [0, 1], [2], torch.device("cpu"), 2))
