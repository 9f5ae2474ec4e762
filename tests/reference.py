"""Independent references, written from the toolkits' own source, not from our code."""

from __future__ import annotations

import numpy as np
import soundfile
import torch
import torchaudio
from librosa.filters import mel as librosa_mel_fn
from librosa.util import normalize

MAX_WAV_VALUE = 32768.0


def hifigan_magnitude(y: torch.Tensor, n_fft=1024, hop_size=256, win_size=1024) -> torch.Tensor:
    """The magnitude step of jik876/hifi-gan meldataset.py mel_spectrogram (center=False), for
    y [1, L] -> [1, n_fft//2 + 1, T]. Only the deprecated real-valued stft output is replaced by
    return_complex + view_as_real."""
    hann_window = torch.hann_window(win_size)
    y = torch.nn.functional.pad(y.unsqueeze(1), (int((n_fft - hop_size) / 2),
                                                 int((n_fft - hop_size) / 2)), mode="reflect")
    y = y.squeeze(1)
    spec = torch.stft(y, n_fft, hop_length=hop_size, win_length=win_size, window=hann_window,
                      center=False, pad_mode="reflect", normalized=False, onesided=True,
                      return_complex=True)
    spec = torch.view_as_real(spec)
    return torch.sqrt(spec.pow(2).sum(-1) + (1e-9))


def hifigan_mel(y: torch.Tensor, n_fft=1024, num_mels=80, sampling_rate=22050, hop_size=256,
                win_size=1024, fmin=0, fmax=8000) -> torch.Tensor:
    """meldataset.py mel_spectrogram, for y [1, L] -> [1, 80, T]."""
    mel = librosa_mel_fn(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax)
    mel_basis = torch.from_numpy(mel).float()
    spec = torch.matmul(mel_basis, hifigan_magnitude(y, n_fft, hop_size, win_size))
    return torch.log(torch.clamp(spec, min=1e-5))


def load_for_hifigan(path, target_rate: int = 22050) -> torch.Tensor:
    """What MelDataset feeds mel_spectrogram: samples / 32768 (soundfile's float scaling),
    mono by channel mean, resampled in float64 with kaiser_best settings if needed (HiFi-GAN
    itself requires 22.05 kHz files), then normalize(audio) * 0.95."""
    audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != target_rate:
        audio = torchaudio.functional.resample(
            torch.from_numpy(audio), rate, target_rate, lowpass_filter_width=64,
            rolloff=0.9475937167399596, resampling_method="sinc_interp_kaiser",
            beta=14.769656459379492).numpy()
    audio = normalize(audio) * 0.95
    return torch.FloatTensor(audio).unsqueeze(0)


def frame_energy_reference(y: torch.Tensor) -> np.ndarray:
    """L2 norm over frequency of HiFi-GAN's magnitude spectrum (NeMo's energy definition)."""
    return torch.linalg.norm(hifigan_magnitude(y), dim=1)[0].numpy()
