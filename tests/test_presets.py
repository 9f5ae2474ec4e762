"""Every preset against a transcription of its toolkit's feature code (tests/reference.py), on
speech-like and recorded audio at the preset's rate: the log-mel within 1e-4, same frame
count."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
import torch

import reference
from extract.config import available_presets, load_preset
from extract.demo import synth_utterance
from extract.features import estimate_pitch, extract_features
from extract.job import run_job
from extract.loader import FeatureStore

from conftest import RECORDED, recorded_speech

TOLERANCE = 1e-4    # log domain, float32


def speech(rate: int, seconds: float = 2.3, seed: int = 5) -> np.ndarray:
    """Speech-like float32 audio, a length that is not a multiple of the hop."""
    return synth_utterance(seconds, rate, np.random.default_rng(seed)).astype(np.float32)[:-37]


def test_every_preset_has_a_reference_and_names_its_toolkit():
    assert set(available_presets()) == set(reference.PRESET_MELS)
    for name in reference.PRESET_MELS:
        preset = load_preset(name)
        assert preset.mirrors and preset.description


@pytest.mark.parametrize("name", sorted(reference.PRESET_MELS))
def test_preset_matches_its_toolkit(name):
    """On synthetic speech and on two recordings, whose near-silent stretches put the
    quietest bins close to the log floor, where rounding shows most."""
    preset = load_preset(name)
    clips = {"synthetic": speech(preset.sample_rate), **recorded_speech(preset.sample_rate)}
    for clip, y in clips.items():
        ours = extract_features(torch.from_numpy(y)[None], torch.tensor([len(y)]), preset)
        expected = reference.PRESET_MELS[name](y)
        mel = ours["mel"][0].numpy()
        assert mel.shape == expected.shape == (preset.num_frames(len(y)), preset.n_mels)
        worst = float(np.abs(mel - expected).max())
        assert worst <= TOLERANCE, (clip, worst)
        assert ours["f0"].shape == ours["energy"].shape == (1, mel.shape[0])


def test_vits_stores_its_linear_input():
    preset = load_preset("vits")
    for y in (speech(22050), *recorded_speech(22050).values()):
        ours = extract_features(torch.from_numpy(y)[None], torch.tensor([len(y)]), preset)
        linear, _ = reference.vits_features(y)
        assert ours["linear"][0].shape == linear.shape
        worst = float(np.abs(np.log(ours["linear"][0].numpy()) - np.log(linear)).max())
        assert worst <= TOLERANCE, worst


@pytest.mark.parametrize("name,energy", [
    ("nemo-fastpitch", lambda mel, mag: np.linalg.norm(mag, axis=0)),      # linear magnitude
    ("dle-fastpitch", lambda mel, mag: np.linalg.norm(mel, axis=1)),       # of the log-mel
])
def test_energy_follows_the_toolkit(name, energy):
    preset = load_preset(name)
    y = speech(22050)
    ours = extract_features(torch.from_numpy(y)[None], torch.tensor([len(y)]), preset)
    mel = reference.dle_fastpitch_mel(y) if name == "dle-fastpitch" else None
    magnitude = np.abs(librosa.stft(np.pad(y, 512), n_fft=1024, hop_length=256, center=False,
                                    window=np.hanning(1024)))
    np.testing.assert_allclose(ours["energy"][0].numpy(), energy(mel, magnitude), rtol=2e-4,
                               atol=1e-4)


def test_center_preset_pitch_is_librosa_pyin_on_the_same_frames(tmp_path):
    """FastPitch-style presets have frames at t * hop, as librosa.pyin(center=True): the store's
    f0 is what DLE's estimate_pitch computes, frame for frame and float for float, and the mel
    matches DLE's from the WAV."""
    (tmp_path / "c" / "wavs").mkdir(parents=True)
    y = speech(22050, seconds=3.0, seed=9)
    soundfile.write(tmp_path / "c" / "wavs" / "a.wav", y, 22050, subtype="PCM_16")
    (tmp_path / "c" / "metadata.csv").write_text("a|text|\n")
    run_job(tmp_path / "c", tmp_path / "dle.zarr", preset="dle-fastpitch", device="cpu",
            show_progress=False)
    store = FeatureStore(tmp_path / "dle.zarr")
    assert store.config["frame_center_offset_s"] == 0
    audio = soundfile.read(tmp_path / "c" / "wavs" / "a.wav", dtype="float32")[0]
    item = store["a"]
    assert float(np.abs(item["mel"].numpy() - reference.dle_fastpitch_mel(audio)).max()) <= \
        TOLERANCE
    f0 = reference.dle_fastpitch_pitch(tmp_path / "c" / "wavs" / "a.wav", len(item["mel"]))
    assert f0.any()
    np.testing.assert_array_equal(item["f0"].numpy(), f0.astype(np.float32))


def test_coqui_pitch_runs_in_float64_as_compute_f0_does():
    """compute_f0 gives librosa.pyin float64 audio, so its difference function runs in float64.
    A wave of period 51.2 samples (every frame alike) whose second harmonic's amplitude puts the
    estimated period 7e-6 of a bin from the edge between two 10-cent bins (found by bisection):
    in float32 its frames would fall in the other bin (37 of 41 did)."""
    preset = load_preset("coqui-fastpitch")
    phase = 2 * np.pi * 5 * np.arange(256 * 40 + 77) / 256
    y = (0.4 * np.sin(phase) + 0.054279103 * np.sin(2 * phase + 0.3)).astype(np.float32)
    expected = reference.coqui_f0(y).astype(np.float32)
    f0 = estimate_pitch(torch.from_numpy(y)[None], torch.tensor([len(y)]), preset,
                        preset.num_frames(len(y)))[0][0].numpy()
    assert expected.all()
    np.testing.assert_array_equal(f0, expected)


def test_coqui_pitch_extends_a_whole_number_of_hops_as_compute_f0_does():
    """Coqui pads a signal whose length is a multiple of hop by hop/2 reflected samples before
    pyin; that moves the last frames of audio that ends voiced. Same f0 on every frame."""
    preset = load_preset("coqui-fastpitch")
    without = dataclasses.replace(preset, pitch=dataclasses.replace(preset.pitch,
                                                                    whole_hop_extension=False))
    clips = []
    for k in range(4):                        # gliding tones cut mid-voicing, 256 * n samples
        t = np.arange(256 * (60 + 7 * k) + (0 if k % 2 else 100)) / 22050
        clips.append((0.5 * np.sin(2 * np.pi * (120 + 30 * k) * t * (1 + 0.3 * t))
                      + 0.02 * np.random.default_rng(k).standard_normal(len(t))))
    audio = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(c).float() for c in clips],
                                            batch_first=True)
    lengths = torch.tensor([len(c) for c in clips])
    n_frames = int(preset.num_frames(lengths).max())
    f0 = estimate_pitch(audio, lengths, preset, n_frames)[0].numpy()
    f0_without = estimate_pitch(audio, lengths, without, n_frames)[0].numpy()
    moved = 0
    for k, clip in enumerate(clips):
        expected = reference.coqui_f0(clip.astype(np.float32))
        n = len(expected)
        np.testing.assert_allclose(f0[k, :n], expected, rtol=1e-6, err_msg=f"clip {k}")
        moved += not np.allclose(f0_without[k, :n], expected, rtol=1e-6)
    assert moved >= 1                         # the extension matters for these endings


def test_recorded_parity_script_reads_a_folder_of_recordings(tmp_path):
    """benchmarks/recorded_parity.py on a WAV and a stereo FLAC (averaged): every preset within
    the tolerance, pyin identical to librosa.pyin."""
    (tmp_path / "wavs").mkdir()
    y, rate = soundfile.read(RECORDED / "arctic_a0007.wav", dtype="float32")
    soundfile.write(tmp_path / "wavs" / "a7.flac", np.stack([y, y], axis=1), rate)
    (tmp_path / "wavs" / "a9.wav").write_bytes((RECORDED / "arctic_a0009.wav").read_bytes())
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "recorded_parity.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == len(reference.PRESET_MELS), result.stdout
    assert all(f"(within {TOLERANCE:g})" in row for row in rows), result.stdout
    assert "2 files, 7.1 s of audio" in result.stdout
    assert "identical f0 and voicing 100.0000%" in result.stdout
