"""Silence trimming (the coqui-fastpitch preset) against librosa.effects.trim and Coqui's
AudioProcessor.trim_silence: the same spans, and features computed on the trimmed audio."""

import librosa
import numpy as np
import pytest
import soundfile
import torch

import reference
from extract.decode.trim import nonsilent_span, trim_span
from extract.demo import synth_utterance
from extract.job import run_job
from extract.loader import FeatureStore

from conftest import assert_same_store, kill_after_shards, recorded_speech, start


def padded_speech(rate: int, seed: int, lead_s: float, tail_s: float,
                  floor: float) -> np.ndarray:
    """Speech-like audio between stretches of near-silence (noise at `floor`)."""
    rng = np.random.default_rng(seed)
    speech = synth_utterance(1.6, rate, rng)
    y = np.concatenate([np.zeros(int(lead_s * rate)), speech, np.zeros(int(tail_s * rate))])
    return 0.8 * y + floor * rng.standard_normal(len(y))


@pytest.mark.parametrize("seed", range(40))
def test_spans_match_librosa_trim(seed, device):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(200, 30000))
    y = np.zeros(n)
    a = int(rng.integers(0, n))
    b = int(rng.integers(a, n + 1))
    y[a:b] = rng.standard_normal(b - a) * rng.choice([1.0, 1e-2, 1e-3])
    y += rng.standard_normal(n) * rng.choice([0.0, 1e-6, 1e-4])
    if seed % 10 == 0:
        y[:] = 0.0                                   # all silent: librosa keeps it whole
    top_db = float(rng.choice([20.0, 45.0, 60.0]))
    expected = librosa.effects.trim(y, top_db=top_db, frame_length=1024, hop_length=256)[1]
    signal = torch.from_numpy(y).to(device)
    assert nonsilent_span(signal, top_db, 1024, 256) == tuple(expected)
    if n > 440:
        start, end = trim_span(signal, top_db, 220, 1024, 256)
        inner = librosa.effects.trim(y[220:-220], top_db=top_db, frame_length=1024,
                                     hop_length=256)[1]
        assert (start, end) == (220 + inner[0], 220 + inner[1])


@pytest.mark.parametrize("top_db", [20.0, 40.0, 60.0])
def test_spans_match_librosa_trim_on_recorded_speech(top_db, device):
    for y in recorded_speech(22050).values():
        signal = torch.from_numpy(y.astype(np.float64)).to(device)
        expected = librosa.effects.trim(y.astype(np.float64), top_db=top_db, frame_length=1024,
                                        hop_length=256)[1]
        assert nonsilent_span(signal, top_db, 1024, 256) == tuple(expected)
        inner = librosa.effects.trim(y[220:-220].astype(np.float64), top_db=top_db,
                                     frame_length=1024, hop_length=256)[1]
        assert trim_span(signal, top_db, 220, 1024, 256) == (220 + inner[0], 220 + inner[1])


def test_coqui_preset_computes_every_feature_on_the_trimmed_audio(tmp_path):
    """Mel (within 1e-4 of Coqui's processor on the trimmed audio), frame counts and pitch
    (librosa.pyin as Coqui's compute_f0 calls it) all follow Coqui's trim_silence."""
    folder = tmp_path / "c"
    (folder / "wavs").mkdir(parents=True)
    clips = {"quiet_edges": padded_speech(22050, 1, 0.5, 0.8, 1e-5),
             "noisy_edges": padded_speech(22050, 2, 0.3, 0.2, 3e-3),     # above -60 dB: kept
             "silent": np.zeros(22050),
             "tiny": padded_speech(22050, 3, 0.0, 0.0, 0.0)[:600]}
    for name, y in clips.items():
        soundfile.write(folder / "wavs" / f"{name}.wav", y, 22050, subtype="PCM_16")
    (folder / "metadata.csv").write_text("".join(f"{name}|text|\n" for name in clips))
    result = run_job(folder, tmp_path / "coqui.zarr", preset="coqui-fastpitch", device="cpu",
                     show_progress=False)
    assert [(r.entry, "too short after trimming silence" in r.reason)
            for r in result.rejected] == [("tiny", True)]
    store = FeatureStore(tmp_path / "coqui.zarr")
    assert store.ids == ("quiet_edges", "noisy_edges", "silent")
    kept_s = sum(end - start for start, end in store.spans.tolist()) / 22050
    assert f"audio: {kept_s:.1f} s after trimming silence" in store.describe()
    for name in store.ids:
        audio = soundfile.read(folder / "wavs" / f"{name}.wav", dtype="float64")[0]
        trimmed = reference.coqui_trim_silence(audio)
        expected = reference.coqui_mel(trimmed)
        inner = librosa.effects.trim(audio[220:-220], top_db=60.0, frame_length=1024,
                                     hop_length=256)[1]
        assert store.spans[store.index_of(name)].tolist() == [220 + inner[0], 220 + inner[1]]
        item = store[name]
        assert item["mel"].shape == expected.shape
        assert float(np.abs(item["mel"].numpy() - expected).max()) <= 1e-4, name
        if name == "silent":
            assert len(trimmed) == len(audio) - 440 and not item["voiced"].any()
            continue
        if name == "quiet_edges":
            assert len(trimmed) < len(audio) - 1.2 * 22050       # the edges are gone
        f0, voiced, _ = librosa.pyin(trimmed, fmin=65.0, fmax=640.0, sr=22050,
                                     frame_length=1024, hop_length=256, center=True,
                                     pad_mode="reflect")
        assert (item["voiced"].numpy() == voiced).mean() >= 0.99
        both = item["voiced"].numpy() & voiced
        cents = 1200 * np.abs(np.log2(item["f0"].numpy()[both] / f0[both]))
        assert both.any() and (cents <= 10.001).mean() >= 0.99


def test_a_trimming_job_killed_midway_resumes_to_the_uninterrupted_store(
        corpus, trimmed_reference, tmp_path):
    """The spans are found again on --resume and agree with the first run's."""
    out = tmp_path / "out.zarr"
    kill_after_shards(corpus, out, 1, "--preset", "coqui-fastpitch")
    resumed = start(corpus, out, "--preset", "coqui-fastpitch", "--resume")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert_same_store(out, trimmed_reference)
