"""Log-mel spectrogram and energy, batched over padded utterances on any torch device.

Shapes: audio [B, L] (zero beyond each utterance's length), lengths [B];
magnitude [B, n_fft//2 + 1, T]; log-mel [B, T, n_mels]; energy [B, T]. T is the frame count of
the longest utterance; frames past an utterance's own count are not meaningful.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from extract.config import Preset


def hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asanyarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz,
                    min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
                    hz / f_sp)


def mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    mel = np.asanyarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                    f_sp * mel)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
                   fmax: float) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft//2 + 1], Slaney scale and area normalisation
    (librosa.filters.mel's defaults), float32."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_hz = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax),
                                          n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=16)
def _device_constants(preset: Preset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    window = torch.hann_window(preset.win_length, periodic=True, dtype=torch.float32)
    basis = torch.from_numpy(mel_filterbank(preset.sample_rate, preset.n_fft, preset.n_mels,
                                            preset.fmin, preset.fmax))
    return window.to(device), basis.to(device)


def reflect_pad(audio: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad each row by `pad` on both sides of its own length (not of the batch's).

    [B, L] -> [B, L + 2 * pad]; equals torch.nn.functional.pad(row[:n], (pad, pad), "reflect")
    on the first n + 2 * pad samples of each row.
    """
    positions = torch.arange(-pad, audio.shape[1] + pad, device=audio.device)
    last = (lengths.to(audio.device) - 1)[:, None]
    index = positions[None, :].abs()
    index = torch.where(index > last, 2 * last - index, index).clamp(min=0)
    return torch.gather(audio, 1, index.clamp(max=audio.shape[1] - 1))


def magnitude_spectrogram(audio: torch.Tensor, lengths: torch.Tensor,
                          preset: Preset) -> torch.Tensor:
    """|STFT| as HiFi-GAN computes it: reflect pad (n_fft - hop) / 2, center=False,
    sqrt(re^2 + im^2 + eps). [B, L] -> [B, n_fft//2 + 1, T]."""
    window, _ = _device_constants(preset, audio.device)
    padded = reflect_pad(audio, lengths, (preset.n_fft - preset.hop_length) // 2)
    spec = torch.stft(padded, preset.n_fft, hop_length=preset.hop_length,
                      win_length=preset.win_length, window=window, center=False,
                      return_complex=True)
    return torch.sqrt(spec.real.square() + spec.imag.square() + preset.magnitude_eps)


def log_mel(magnitude: torch.Tensor, preset: Preset) -> torch.Tensor:
    """ln(clamp(mel_basis @ magnitude, log_floor)), [B, F, T] -> [B, T, n_mels]."""
    _, basis = _device_constants(preset, magnitude.device)
    mel = torch.matmul(basis, magnitude)
    return torch.log(torch.clamp(mel, min=preset.log_floor)).transpose(1, 2)


def frame_energy(magnitude: torch.Tensor) -> torch.Tensor:
    """Per-frame L2 norm of the linear magnitude spectrum, [B, F, T] -> [B, T]."""
    return torch.linalg.vector_norm(magnitude, dim=1)
