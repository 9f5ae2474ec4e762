"""Anti-aliased resampling of padded batches on the device (torchaudio's kaiser-window sinc).

DALI's audio_resample does not filter when downsampling (a 15 kHz tone at 44.1 kHz comes out
at 7050 Hz at full level), so every rate change goes through here.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from extract.precision import ieee_float32

# librosa's / resampy's "kaiser_best" settings: about -110 dB of aliasing.
KAISER_BEST = dict(lowpass_filter_width=64, rolloff=0.9475937167399596,
                   resampling_method="sinc_interp_kaiser", beta=14.769656459379492)


@lru_cache(maxsize=32)
def _resampler(orig_rate: int, new_rate: int, device: torch.device) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.Resample(orig_rate, new_rate, **KAISER_BEST).to(device)


def resampled_length(num_samples: int, orig_rate: int, new_rate: int) -> int:
    """Samples after resampling, as torchaudio computes it: ceil(n * new / orig)."""
    return -(-num_samples * new_rate // orig_rate)


@ieee_float32()
def resample_batch(audio: torch.Tensor, lengths: torch.Tensor, orig_rate: int,
                   new_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample padded rows [B, L] -> [B, L'], zero past each row's new length.

    Each row comes out exactly as if resampled alone: padding is zero, and the filter sees
    zeros past the end either way.
    """
    if orig_rate == new_rate:
        return audio, lengths
    out = _resampler(orig_rate, new_rate, audio.device)(audio)
    new_lengths = -(-lengths * new_rate // orig_rate)
    keep = torch.arange(out.shape[1], device=out.device)[None, :] < new_lengths[:, None]
    return out * keep, new_lengths


def to_preset_rate(audio: torch.Tensor, lengths: torch.Tensor, rates: list[int],
                   target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample each row from its own rate to `target`; rows keep their order."""
    if all(r == target for r in rates):
        return audio, lengths
    parts = []
    for rate in sorted(set(rates)):
        rows = torch.tensor([i for i, r in enumerate(rates) if r == rate], device=audio.device)
        sub_lengths = lengths[rows]
        sub = audio[rows, : int(sub_lengths.max())]
        parts.append((rows, *resample_batch(sub, sub_lengths, rate, target)))
    width = max(p[1].shape[1] for p in parts)
    out = torch.zeros(len(rates), width, dtype=audio.dtype, device=audio.device)
    out_lengths = torch.empty_like(lengths)
    for rows, resampled, new_lengths in parts:
        out[rows, : resampled.shape[1]] = resampled
        out_lengths[rows] = new_lengths
    return out, out_lengths
