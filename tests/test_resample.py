import numpy as np
import pytest
import torch
import torchaudio

import extract.decode.resample as resampling
from extract.decode.resample import KAISER_BEST
from extract.decode.resample import resample, to_preset_rate


def tone_level_db(y: np.ndarray, rate: int, freq: float) -> float:
    """Level of the strongest component within 20 Hz of `freq`, Blackman-Harris windowed."""
    from scipy.signal.windows import blackmanharris

    spectrum = np.abs(np.fft.rfft(y * blackmanharris(len(y))))
    bins = np.fft.rfftfreq(len(y), 1 / rate)
    near = np.abs(bins - freq) <= 20
    return 20 * np.log10(spectrum[near].max() + 1e-30)


def test_15khz_tone_is_removed_when_downsampling_44k1_to_22k05(device):
    rate, n = 44100, 44100
    t = np.arange(n) / rate
    x = 0.4 * np.sin(2 * np.pi * 1000 * t) + 0.4 * np.sin(2 * np.pi * 15000 * t)
    out = resample(torch.tensor(x, dtype=torch.float32, device=device), rate, 22050)
    y = out.double().cpu().numpy()[2000:-2000]                         # skip the edges
    wanted = tone_level_db(y, 22050, 1000)
    alias = tone_level_db(y, 22050, 22050 - 15000)   # where DALI puts it: 7050 Hz
    assert wanted - alias >= 60, f"alias only {wanted - alias:.1f} dB down"


@pytest.mark.parametrize("path", ["torchaudio", "sparse"])
@pytest.mark.parametrize("orig_rate, new_rate", [(22254, 22050), (11127, 24000), (48000, 22050),
                                                 (22050, 16000), (44100, 22050)])
def test_both_paths_match_a_float64_resample(orig_rate, new_rate, path, device, monkeypatch):
    """Each rate pair through torchaudio's kernel and through the sparse path (each forced here;
    the job takes the sparse one where torchaudio's kernel is large) against torchaudio's
    resample computed in float64, rows of two lengths in one batch."""
    monkeypatch.setattr(resampling, "MAX_DENSE_KERNEL", 10 ** 12 if path == "torchaudio" else 0)
    if path == "sparse":
        monkeypatch.setattr(resampling, "_resampler", None)      # the dense path would fail
        monkeypatch.setattr(resampling, "SPARSE_BLOCK", 7777)    # blocks of a few phases
    lengths = [9000, 5001]
    x = np.random.default_rng(3).uniform(-0.5, 0.5, (2, 9000))
    x[1, 5001:] = 0
    out, out_lengths = to_preset_rate(torch.tensor(x, dtype=torch.float32, device=device),
                                      torch.tensor(lengths, device=device), [orig_rate] * 2,
                                      new_rate)
    for row, n in enumerate(lengths):
        reference = torchaudio.functional.resample(torch.from_numpy(x[row, :n]), orig_rate,
                                                   new_rate, **KAISER_BEST).numpy()
        assert int(out_lengths[row]) == len(reference)
        np.testing.assert_allclose(out[row, : len(reference)].double().cpu().numpy(), reference,
                                   rtol=0, atol=3e-6)
        assert not out[row, len(reference):].any()


def test_rates_without_common_factors_resample_cleanly_in_little_memory(device, monkeypatch):
    """44101 -> 22050 Hz (coprime): torchaudio's kernel would hold a billion taps; the sparse
    path gives the 1 kHz tone to within 1e-4 and puts the 15 kHz alias 60 dB below it."""
    monkeypatch.setattr(resampling, "_resampler", None)
    rate = 44101
    t = np.arange(2 * rate) / rate
    x = 0.4 * np.sin(2 * np.pi * 1000 * t) + 0.4 * np.sin(2 * np.pi * 15000 * t)
    y = resample(torch.tensor(x, dtype=torch.float32, device=device), rate, 22050)
    y = y.double().cpu().numpy()
    assert len(y) == -(-len(x) * 22050 // rate)
    tone = 0.4 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 22050)
    middle = slice(2000, -2000)                                   # the filter's edges aside
    np.testing.assert_allclose(y[middle], tone[middle], rtol=0, atol=1e-4)
    alias = tone_level_db(y[middle], 22050, 22050 - 15000)
    assert tone_level_db(y[middle], 22050, 1000) - alias >= 60


@pytest.mark.parametrize("path", ["torchaudio", "sparse"])
def test_a_row_comes_out_the_same_whatever_else_its_batch_holds(path, device, monkeypatch):
    """Each row of a batch, at its own rate, exactly as resampled alone: convolution routines
    pick their algorithm, and so their rounding, by the input's size (on the CPU a 16 kHz row
    of 12,800 samples, resampled with a longer one, came out up to 6e-7 from itself alone), and
    a store must not depend on how its utterances were batched."""
    monkeypatch.setattr(resampling, "MAX_DENSE_KERNEL", 10 ** 12 if path == "torchaudio" else 0)
    rng = np.random.default_rng(1)
    rates = [16000, 44100, 22050, 16000, 48000, 16000]
    lengths = [12800, 30000, 20000, 40000, 41000, 3000]
    audio = torch.zeros(len(rates), max(lengths), device=device)
    for row, n in enumerate(lengths):
        audio[row, :n] = torch.from_numpy(rng.uniform(-0.5, 0.5, n).astype(np.float32))
    out, out_lengths = to_preset_rate(audio, torch.tensor(lengths, device=device), rates, 22050)
    for row, (rate, n) in enumerate(zip(rates, lengths)):
        alone = audio[row, :n] if rate == 22050 else resample(audio[row, :n], rate, 22050)
        assert int(out_lengths[row]) == len(alone) == -(-n * 22050 // rate)
        assert torch.equal(out[row, :len(alone)], alone), (rate, n)
        assert not out[row, len(alone):].any()


def test_resampling_runs_in_ieee_float32_and_restores_the_setting(monkeypatch):
    """cuDNN's default TF32 convolutions put log-mel errors of 0.15 into resampled audio on an
    H200; the resampler must see IEEE float32, and the caller's setting must come back."""
    seen = []

    def spy(orig_rate, new_rate, device):
        return lambda audio: seen.append(torch.backends.cudnn.conv.fp32_precision) or audio

    monkeypatch.setattr(resampling, "_resampler", spy)
    before = torch.backends.cudnn.conv.fp32_precision
    resample(torch.zeros(100), 44100, 22050)
    assert seen == ["ieee"]
    assert torch.backends.cudnn.conv.fp32_precision == before == "tf32"
