"""The dio pitch method (WORLD's Dio + StoneMask, the espnet preset) against pyworld itself, the
library ESPnet calls."""

import numpy as np
import pytest
import pyworld
import torch

import reference
from extract.config import load_preset
from extract.demo import synth_utterance
from extract.features import extract_features
from extract.features.world import dio, stonemask

from conftest import recorded_speech

RATE, HOP = 22050, 256
FRAME_PERIOD = 1000 * HOP / RATE


def clip(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "speech":
        return synth_utterance(1.0 + 0.45 * seed, RATE, rng).astype(np.float32).astype(np.float64)
    if kind == "noise":
        return 0.1 * rng.standard_normal(int(0.8 * RATE))
    if kind == "tone_in_noise":
        t = np.arange(int(1.3 * RATE)) / RATE
        noise = 0.05 * rng.standard_normal(len(t))
        return 0.5 * np.sin(2 * np.pi * 150 * t * (1 + 0.2 * t)) + noise
    if kind == "recorded":
        return list(recorded_speech(RATE).values())[seed].astype(np.float64)
    if kind == "short":                              # fewer frames than Dio's shortest voicing
        return synth_utterance(1.0, RATE, rng)[5000:5000 + 600].astype(np.float64)
    return np.zeros(int(0.5 * RATE))


@pytest.mark.parametrize("kind,seed", [("speech", s) for s in range(6)]
                         + [("noise", 0), ("tone_in_noise", 1), ("silence", 0), ("short", 2),
                            ("recorded", 0), ("recorded", 1)])
def test_dio_and_stonemask_match_pyworld(kind, seed, device):
    x = clip(kind, seed)
    signal = torch.from_numpy(x).to(device)
    expected, positions = pyworld.dio(x, RATE, f0_floor=80, f0_ceil=400, frame_period=FRAME_PERIOD)
    ours = dio(signal, RATE, positions, FRAME_PERIOD, 80.0, 400.0)
    assert ((ours > 0) == (expected > 0)).all()
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=0)
    refined = stonemask(signal, RATE, positions, expected)
    np.testing.assert_allclose(refined, pyworld.stonemask(x, expected, positions, RATE),
                               rtol=1e-9, atol=0)
    if kind in ("speech", "tone_in_noise", "recorded"):
        assert (expected > 0).mean() > 0.3


def test_espnet_preset_pitch_is_espnets_dio_on_the_mel_frames(device):
    preset = load_preset("espnet")
    ys = [synth_utterance(s, RATE, np.random.default_rng(k)).astype(np.float32)[:-k * 37 or None]
          for k, s in enumerate((2.1, 1.4, 2.6))]
    lengths = torch.tensor([len(y) for y in ys])
    audio = torch.zeros(len(ys), int(lengths.max()))
    for row, y in enumerate(ys):
        audio[row, : len(y)] = torch.from_numpy(y)
    features = {name: x.cpu() for name, x in extract_features(
        audio.to(device), lengths.to(device), preset).items()}
    for row, y in enumerate(ys):
        n = preset.num_frames(len(y))
        expected = reference.espnet_pitch(y, n)
        f0 = features["f0"][row, :n].numpy()
        np.testing.assert_allclose(f0, expected.astype(np.float32), rtol=1e-6, atol=0)
        assert (features["voiced"][row, :n].numpy() == (expected > 0)).all()
        assert (expected > 0).any()
