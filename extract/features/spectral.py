"""Log-mel spectrogram and energy, batched over padded utterances on any torch device, for
every preset's window, padding, magnitude, mel basis and log.

Shapes: audio [B, L] (zero beyond each utterance's length), lengths [B];
magnitude [B, n_fft//2 + 1, T]; log-mel [B, T, n_mels]; energy [B, T]. T is the frame count of
the longest utterance; frames past an utterance's own count are not meaningful.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from extract.config import Preset

# Frames per block of rows on the CPU (spectral_features): the float64 transform's intermediates
# for about this many frames stay in cache, which ran 3-4x faster than whole batches of 32
# 10-second or 128 2-second rows. A GPU takes the whole batch at once.
CPU_BLOCK_FRAMES = 1024


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
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float,
                   scale: str = "slaney", norm: str = "slaney") -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft//2 + 1], float32.

    "slaney" is librosa.filters.mel (computed in float64, as librosa does); "htk" is
    torchaudio's melscale_fbanks, whose float32 arithmetic is part of what Vocos-style models
    were trained on."""
    if scale == "htk":
        import torchaudio

        return torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, fmin, fmax, n_mels, sample_rate,
            norm="slaney" if norm == "slaney" else None, mel_scale="htk").T.numpy()
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_hz = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax),
                                          n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def empty_mel_band_note(preset: Preset) -> str | None:
    """A note when some mel filters cover no FFT bin (librosa warns "Empty filters detected"):
    those bands hold only the log floor. None when every band has weight."""
    basis = mel_filterbank(preset.sample_rate, preset.n_fft, preset.n_mels, preset.fmin,
                           preset.fmax, preset.mel_scale, preset.mel_norm)
    empty = int((basis.max(axis=1) <= 0).sum())
    if not empty:
        return None
    return (f"note: preset {preset.name}: {empty} of {preset.n_mels} mel bands cover no FFT bin "
            f"(bins {preset.sample_rate / preset.n_fft:.1f} Hz apart), so they hold only the "
            "log floor; use fewer mels or a larger n_fft")


@lru_cache(maxsize=16)
def _device_constants(preset: Preset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    periodic = preset.window == "hann_periodic"
    if preset.window_table == "torch":
        window = torch.hann_window(preset.win_length, periodic=periodic).double()
    else:
        window = torch.hann_window(preset.win_length, periodic=periodic, dtype=torch.float64)
        if preset.window_table == "rounded_float32":
            window = window.float().double()
    basis = torch.from_numpy(mel_filterbank(preset.sample_rate, preset.n_fft, preset.n_mels,
                                            preset.fmin, preset.fmax, preset.mel_scale,
                                            preset.mel_norm))
    return window.to(device), basis.to(device)


def reflect_pad(audio: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad each row by `pad` on both sides of its own length (not of the batch's).

    [B, L] -> [B, L + 2 * pad]; equals torch.nn.functional.pad(row[:n], (pad, pad), "reflect")
    on the first n + 2 * pad samples of each row (the rest is zero).
    """
    out = torch.nn.functional.pad(audio, (pad, pad))
    last = (lengths.to(audio.device) - 1)[:, None]
    step = torch.arange(1, pad + 1, device=audio.device)[None]     # samples past an edge
    # sample -k is sample k, reflected again off the far end (and clamped) for short rows
    before = torch.where(step > last, 2 * last - step, step).clamp(min=0)
    out[:, :pad] = audio.gather(1, before).flip(1)
    out.scatter_(1, pad + last + step, audio.gather(1, (last - step).clamp(min=0)))
    return out


def pad_for_stft(audio: torch.Tensor, lengths: torch.Tensor, preset: Preset) -> torch.Tensor:
    """Pad each row by preset.pad_amount on both sides of its own length, reflecting or with
    zeros (rows are already zero past their length)."""
    if preset.padding.startswith("reflect"):
        return reflect_pad(audio, lengths, preset.pad_amount)
    return torch.nn.functional.pad(audio, (preset.pad_amount, preset.pad_amount))


def magnitude_spectrogram(audio: torch.Tensor, lengths: torch.Tensor,
                          preset: Preset) -> torch.Tensor:
    """|STFT| = sqrt(max(re^2 + im^2 + magnitude_eps, power_floor)) of the padded rows,
    center=False on the padding done here. [B, L] -> [B, n_fft//2 + 1, T] float32.

    The transform runs in float64 with the window table the toolkit builds (window_table):
    low bins are small differences of large sums, and a float32 transform there is off by up to
    5e-4 in the log."""
    window, _ = _device_constants(preset, audio.device)
    spec = torch.stft(pad_for_stft(audio, lengths, preset).double(), preset.n_fft,
                      hop_length=preset.hop_length, win_length=preset.win_length,
                      window=window, center=False, return_complex=True)
    power = spec.real.square().add_(spec.imag.square()).add_(preset.magnitude_eps)
    if preset.power_floor > 0:
        power.clamp_(min=preset.power_floor)
    return power.sqrt_().float()


def log_mel(magnitude: torch.Tensor, preset: Preset) -> torch.Tensor:
    """The preset's log of mel_basis @ magnitude, [B, F, T] -> [B, T, n_mels]."""
    _, basis = _device_constants(preset, magnitude.device)
    mel = torch.matmul(basis, magnitude)
    if preset.log == "ln_add":
        out = torch.log(mel + preset.log_floor)
    elif preset.log == "log10_clamp":
        out = torch.log10(torch.clamp(mel, min=preset.log_floor))
    else:
        out = torch.log(torch.clamp(mel, min=preset.log_floor))
    return out.transpose(1, 2)


def frame_energy(magnitude: torch.Tensor, mel: torch.Tensor, preset: Preset) -> torch.Tensor:
    """Per-frame L2 norm of the linear magnitude [B, F, T] (magnitude_l2) or of the log-mel
    [B, T, n_mels] (log_mel_l2) -> [B, T]."""
    if preset.energy == "log_mel_l2":
        return torch.linalg.vector_norm(mel, dim=2)
    return torch.linalg.vector_norm(magnitude, dim=1)


def spectral_features(audio: torch.Tensor, lengths: torch.Tensor, preset: Preset
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(log-mel [B, T, n_mels], energy [B, T], and the magnitude [B, T, F] where the preset
    stores it, else None) of audio [B, L]; on the CPU in blocks of rows of about
    CPU_BLOCK_FRAMES frames, which gives the same floats as one block."""
    batch = audio.shape[0]
    rows = batch
    if audio.device.type == "cpu":
        rows = max(1, CPU_BLOCK_FRAMES // max(int(preset.num_frames(audio.shape[1])), 1))
    if rows >= batch:                          # a GPU's batch: one block, no copy
        return _spectral_block(audio, lengths, preset)
    blocks = [_spectral_block(audio[first:first + rows], lengths[first:first + rows], preset)
              for first in range(0, batch, rows)]
    mels, energies, linears = zip(*blocks)
    return (torch.cat(mels), torch.cat(energies),
            torch.cat(linears) if preset.store_linear else None)


def _spectral_block(audio: torch.Tensor, lengths: torch.Tensor, preset: Preset
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    magnitude = magnitude_spectrogram(audio, lengths, preset)
    mel = log_mel(magnitude, preset)
    return (mel, frame_energy(magnitude, mel, preset),
            magnitude.transpose(1, 2) if preset.store_linear else None)
