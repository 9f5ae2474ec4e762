"""Decoding in batches whose size follows the files' lengths, so that memory stays bounded."""

import numpy as np
import soundfile
import torch

import extract.job
import extract.plan
from extract.decode.dali import decode_batches
from extract.input.audio import write_wav
from extract.job import run_job
from extract.plan import LONG_UTTERANCE_S, batch_sizes

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
