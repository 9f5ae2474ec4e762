import dataclasses

import librosa
import numpy as np
import pytest
import torch

from extract.config import load_preset, preset_names
from extract.features import spectral
from extract.features.spectral import (empty_mel_band_note, mel_filterbank, reflect_pad,
                                       spectral_features)
from extract.loader import FeatureStore
from reference import frame_energy_reference, hifigan_mel, load_for_hifigan

from conftest import MIXED_SPECS


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (22050, 1024, 80, 0, 8000), (24000, 1024, 100, 0, 12000), (16000, 512, 80, 80, 7600)])
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def test_reflect_pad_is_per_row():
    rng = np.random.default_rng(0)
    lengths = torch.tensor([900, 400, 700])
    audio = torch.zeros(3, 900)
    for row, n in enumerate(lengths):
        audio[row, :n] = torch.from_numpy(rng.standard_normal(int(n)).astype(np.float32))
    padded = reflect_pad(audio, lengths, 384)
    for row, n in enumerate(lengths.tolist()):
        ref = torch.nn.functional.pad(audio[row:row + 1, :n][None], (384, 384), mode="reflect")
        torch.testing.assert_close(padded[row, : n + 768], ref[0, 0], rtol=0, atol=0)
        assert not padded[row, n + 768:].any()


def test_reflect_pad_of_rows_shorter_than_the_pad():
    """Too short for one reflection (torch's reflect refuses): sample -k is sample k, and an
    index past either end reflects off the other end once more, then clamps at sample 0."""
    pad, lengths = 384, [300, 40, 1]
    audio = torch.zeros(3, 300)
    for row, n in enumerate(lengths):
        audio[row, :n] = torch.arange(1, n + 1, dtype=torch.float32)
    padded = reflect_pad(audio, torch.tensor(lengths), pad)
    for row, n in enumerate(lengths):
        index = np.abs(np.arange(-pad, n + pad))
        index = np.where(index > n - 1, 2 * (n - 1) - index, index).clip(min=0)
        np.testing.assert_array_equal(padded[row, : n + 2 * pad].numpy(),
                                      audio[row].numpy()[index])


def test_hifigan_preset_matches_hifigan_definition(mixed_corpus, mixed_store_on_each_device):
    """Every utterance against meldataset.mel_spectrogram: 22.05 kHz files (mono, stereo, pcm16,
    float) within 1e-4; resampled files within 2e-3 of a float64 resample (float32 rounding of
    the resampled audio shows in the quietest bins; 2.3e-4 at most on the CPU), or 1e-4 where
    the rates take the sparse resampler (22254 Hz)."""
    store = FeatureStore(mixed_store_on_each_device)
    worst, allowed = {}, {}
    for utt_id, _, rate, _, _ in MIXED_SPECS:
        y = load_for_hifigan(mixed_corpus / "wavs" / f"{utt_id}.wav")
        ref = hifigan_mel(y)[0].T.numpy()
        item = store[utt_id]
        assert item["mel"].shape == ref.shape == (y.shape[1] // 256, 80)
        worst[utt_id] = float(np.abs(item["mel"].numpy() - ref).max())
        allowed[utt_id] = 2e-3 if rate in (44100, 48000, 16000) else 1e-4
        np.testing.assert_allclose(item["energy"].numpy(), frame_energy_reference(y),
                                   rtol=1e-3, atol=1e-4)
    print("largest log-mel difference per utterance:", worst)
    assert all(worst[u] <= allowed[u] for u in worst), (worst, allowed)


def test_preset_frame_geometry():
    p = load_preset("hifigan")
    assert p.num_frames(22050) == 86
    assert p.frame_center_offset_s == pytest.approx(128 / 22050)


def test_mel_bands_without_an_fft_bin_are_noted():
    """400 Slaney mels on a 1024-point FFT at 22.05 kHz: as many empty bands as librosa's own
    filters have (it warns "Empty filters detected"); no shipped preset has one."""
    preset = dataclasses.replace(load_preset("hifigan"), name="dense", n_mels=400)
    with pytest.warns(UserWarning, match="Empty filters detected"):
        reference = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=400, fmin=0.0, fmax=8000.0)
    empty = int((reference.max(axis=1) == 0).sum())
    assert empty > 0
    assert empty_mel_band_note(preset).startswith(f"note: preset dense: {empty} of 400 mel bands")
    assert [name for name in preset_names() if empty_mel_band_note(load_preset(name))] == []


@pytest.mark.parametrize("name", ["hifigan", "vits", "espnet"])
def test_cpu_blocks_of_rows_give_the_floats_of_one_block(name, monkeypatch):
    """The CPU path computes the spectrogram a few rows at a time (CPU_BLOCK_FRAMES); the job's
    stores are identical whatever the batch size only if that changes no float."""
    preset = load_preset(name)
    rng = np.random.default_rng(1)
    lengths = torch.tensor([9000, 4000, 7000, 1500, 8800])
    audio = torch.zeros(5, 9000)
    for row, n in enumerate(lengths.tolist()):
        audio[row, :n] = torch.from_numpy(rng.standard_normal(n).astype(np.float32)) * 0.1
    monkeypatch.setattr(spectral, "CPU_BLOCK_FRAMES", 10 ** 9)
    whole = spectral_features(audio, lengths, preset)
    monkeypatch.setattr(spectral, "CPU_BLOCK_FRAMES", 2 * int(preset.num_frames(9000)))
    blocks = spectral_features(audio, lengths, preset)
    assert (whole[2] is None) == (blocks[2] is None) == (not preset.store_linear)
    for one, blocked in zip(whole, blocks):
        if one is not None:
            assert torch.equal(one, blocked)
