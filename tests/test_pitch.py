import librosa
import numpy as np
import pytest
import torch

from extract.config import load_preset
from extract.features import extract_features
from extract.features.pitch import pitch_frames, yin

PRESET = load_preset("hifigan")
SR, HOP = 22050, 256


def harmonic(f0: np.ndarray, rng=None) -> np.ndarray:
    """Three harmonics on the per-sample contour f0, plus faint noise."""
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = 0.3 * np.sin(phase) + 0.15 * np.sin(2 * phase) + 0.05 * np.sin(3 * phase)
    rng = rng or np.random.default_rng(0)
    return (y + 0.003 * rng.standard_normal(len(y))).astype(np.float32)


def run_yin(y: np.ndarray, device: str = "cpu"):
    audio = torch.from_numpy(y)[None].to(device)
    q = PRESET.pitch
    frames = pitch_frames(audio, torch.tensor([len(y)], device=device), PRESET, len(y) // HOP)
    f0, voiced = yin(frames, SR, q.fmin, q.fmax, q.threshold, q.silence_db)
    return f0[0].cpu().numpy(), voiced[0].cpu().numpy()


def test_yin_matches_librosa_yin_on_the_same_frames(device):
    """librosa.yin frames are centred at t*hop; ours at t*hop + hop/2, so feed librosa the signal
    shifted by hop/2 and compare interior frames."""
    t = np.arange(3 * SR) / SR
    y = harmonic(110 + 80 * (1 + np.sin(2 * np.pi * 0.6 * t)))
    ours, voiced = run_yin(y, device)
    ref = librosa.yin(y[HOP // 2:], fmin=PRESET.pitch.fmin, fmax=PRESET.pitch.fmax, sr=SR,
                      frame_length=PRESET.pitch.frame_length, hop_length=HOP, center=True)
    inner = slice(4, len(ours) - 4)
    assert voiced[inner].mean() > 0.95
    cents = 1200 * np.abs(np.log2(ours[inner][voiced[inner]] / ref[inner][voiced[inner]]))
    assert cents.max() < 1.0, cents.max()


def test_f0_frames_are_centred_like_the_mel_frames():
    """A pitch step at sample s: frames whose centre t*hop + hop/2 is well before s read the low
    pitch, well after it the high one; the boundary frame is where the centres say."""
    step = 40 * HOP + 3 * HOP // 4
    f0 = np.where(np.arange(2 * SR) < step, 120.0, 240.0)
    ours, voiced = run_yin(harmonic(f0))
    centres = np.arange(len(ours)) * HOP + HOP // 2
    before = (centres < step - 600) & (centres > 600)
    after = (centres > step + 600) & (centres < len(f0) - 600)
    assert voiced[before].all() and voiced[after].all()
    np.testing.assert_allclose(ours[before], 120.0, rtol=0.01)
    np.testing.assert_allclose(ours[after], 240.0, rtol=0.01)


def test_silence_and_noise_are_unvoiced():
    rng = np.random.default_rng(3)
    y = np.concatenate([np.zeros(SR), 0.3 * rng.standard_normal(SR)]).astype(np.float32)
    f0, voiced = run_yin(y)
    assert not voiced.any() and not f0.any()


def test_all_features_share_the_frame_count():
    lengths = torch.tensor([22050, 10000, 5000])
    audio = torch.zeros(3, 22050)
    for row, n in enumerate(lengths.tolist()):
        audio[row, :n] = torch.from_numpy(harmonic(np.full(n, 150.0)))
    features = extract_features(audio, lengths, PRESET)
    frames = 22050 // HOP
    assert features["mel"].shape == (3, frames, 80)
    for name in ("f0", "voiced", "voiced_prob", "energy"):
        assert features[name].shape == (3, frames)


@pytest.mark.parametrize("shape, n_lengths", [((0, 22050), 0), ((2, 0), 2), ((22050,), 1),
                                               ((2, 22050), 3)])
def test_features_of_an_empty_or_misshapen_batch_are_refused_clearly(shape, n_lengths):
    with pytest.raises(ValueError, match=r"needs audio \[B, L\] with B, L > 0 and lengths \[B\]"):
        extract_features(torch.zeros(shape), torch.zeros(n_lengths, dtype=torch.long), PRESET)
