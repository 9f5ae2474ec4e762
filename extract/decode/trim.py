"""Silence trimming, for presets whose toolkit trims before computing features.

Coqui's AudioProcessor.trim_silence cuts `margin` samples off each end, then keeps
librosa.effects.trim's span: RMS over centred, zero-padded frames of `frame_length` every
`hop_length`; frames within `top_db` of the loudest are non-silent, and the span runs from the
first non-silent frame's sample to the end of the last one's hop. The job finds every span in a
pass before extraction (frame counts fix the store's layout), then cuts each utterance to it.
"""

from __future__ import annotations

import torch

AMIN_POWER = 1e-10          # librosa.amplitude_to_db's amin (1e-5) squared
FRAMES_PER_STEP = 4096      # bounds the [frames, frame_length] scratch of long files


def frame_power(y: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Mean square of each centred, zero-padded frame of the 1-D `y`: librosa.feature.rms
    squared, [1 + len(y) // hop_length] for even frame lengths."""
    half = frame_length // 2
    frames = torch.nn.functional.pad(y, (half, half)).unfold(0, frame_length, hop_length)
    return torch.cat([frames[i: i + FRAMES_PER_STEP].square().mean(dim=1)
                      for i in range(0, frames.shape[0], FRAMES_PER_STEP)])


def nonsilent_span(y: torch.Tensor, top_db: float, frame_length: int,
                   hop_length: int) -> tuple[int, int]:
    """librosa.effects.trim(y, top_db=top_db, frame_length=..., hop_length=...)[1] for the 1-D
    float64 `y`: the [start, end) samples kept. All-silent audio is kept whole, as there."""
    if y.numel() == 0:
        return 0, 0
    rms = frame_power(y, frame_length, hop_length).sqrt()
    power = rms.square()          # as librosa: rms, then amplitude_to_db squares it again
    db = (10 * torch.log10(power.clamp(min=AMIN_POWER))
          - 10 * torch.log10(rms.max().square().clamp(min=AMIN_POWER)))
    kept = torch.nonzero(db > -top_db).flatten()      # never empty: the loudest frame is 0 dB
    return int(kept[0]) * hop_length, min(y.numel(), (int(kept[-1]) + 1) * hop_length)


def trim_span(y: torch.Tensor, top_db: float, margin: int, frame_length: int,
              hop_length: int) -> tuple[int, int]:
    """Coqui's trim_silence(y) as the [start, end) samples of `y` it keeps:
    librosa.effects.trim(y[margin:-margin])."""
    inner = y[margin: max(margin, y.numel() - margin)].double()
    start, end = nonsilent_span(inner, top_db, frame_length, hop_length)
    return margin + start, margin + end


def cut_spans(audio: torch.Tensor, spans: list[tuple[int, int]]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [B, L] cut to their [start, end) spans, left-aligned and zero past each new length:
    ([B, max length], lengths [B])."""
    lengths = torch.tensor([end - start for start, end in spans], device=audio.device)
    out = torch.zeros(len(spans), int(lengths.max()), dtype=audio.dtype, device=audio.device)
    for row, (start, end) in enumerate(spans):
        out[row, : end - start] = audio[row, start:end]
    return out, lengths
