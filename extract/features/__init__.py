"""Features computed on the device from padded waveform batches at the preset's rate."""

from __future__ import annotations

import torch

from extract.config import Preset
from extract.features import pitch, pyin, world
from extract.features.spectral import spectral_features
from extract.precision import ieee_float32
from extract.stages import stage


def normalize_peak(audio: torch.Tensor, peak: float) -> torch.Tensor:
    """Scale each row to max |x| = peak as HiFi-GAN and BigVGAN do, librosa.util.normalize(y)
    * peak on float64 audio, then float32: one rounding per sample (scaling in float32 rounds
    twice, which moved the quietest log-mel bins of recorded speech by up to 3e-4). Silent rows
    stay 0."""
    wide = audio.double()
    current = wide.abs().amax(dim=1, keepdim=True)
    tiny = torch.finfo(audio.dtype).tiny
    return torch.where(current > tiny, wide / current.clamp(min=tiny) * peak,
                       wide).to(audio.dtype)


@ieee_float32()
def extract_features(audio: torch.Tensor, lengths: torch.Tensor,
                     preset: Preset) -> dict[str, torch.Tensor]:
    """Padded audio [B, L] at preset.sample_rate, zero past `lengths` -> mel [B, T, n_mels],
    f0 [B, T], voiced [B, T], voiced_prob [B, T], energy [B, T] (and linear [B, T, F] if the
    preset stores it), all on the same frames."""
    if audio.dim() != 2 or 0 in audio.shape or lengths.shape != audio.shape[:1]:
        raise ValueError(f"extract_features needs audio [B, L] with B, L > 0 and lengths [B], "
                         f"got audio {tuple(audio.shape)} and lengths {tuple(lengths.shape)}")
    with stage("spectrogram"):
        if preset.peak_normalize is not None:
            audio = normalize_peak(audio, preset.peak_normalize)
        mel, energy, linear = spectral_features(audio, lengths, preset)
    f0, voiced, voiced_prob = estimate_pitch(audio, lengths, preset, mel.shape[1])
    features = {"mel": mel, "f0": f0, "voiced": voiced, "voiced_prob": voiced_prob,
                "energy": energy}
    if linear is not None:
        features["linear"] = linear
    return features


def estimate_pitch(audio: torch.Tensor, lengths: torch.Tensor, preset: Preset,
                   n_frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f0 [B, n_frames] (Hz, 0 when unvoiced), voiced and voiced_prob by the preset's method."""
    q = preset.pitch
    if q.method == "dio":
        with stage("pitch (dio)"):
            f0 = world.dio_stonemask(audio, lengths, preset.sample_rate, preset.hop_length,
                                     n_frames, q.fmin, q.fmax).float()
        return f0, f0 > 0, (f0 > 0).float()
    with stage("pitch frames"):
        frames = pitch.pitch_frames(audio.to(getattr(torch, q.dtype)), lengths, preset,
                                    n_frames)
    if q.method == "pyin":
        return pyin.pyin(frames, preset.num_frames(lengths), preset.sample_rate,
                         preset.hop_length, q.fmin, q.fmax, q.switch_prob, q.no_trough_prob,
                         q.max_transition_rate)
    with stage("pitch (yin)"):
        f0, voiced = pitch.yin(frames, preset.sample_rate, q.fmin, q.fmax, q.threshold,
                               q.silence_db)
    return f0, voiced, voiced.float()
