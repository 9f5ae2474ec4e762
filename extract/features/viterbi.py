"""Viterbi decoding of pYIN's state sequence with banded transitions, exactly as
librosa.sequence.viterbi decodes the dense matrix librosa.pyin builds.

States are n voiced bins then n unvoiced bins. A bin moves at most `half` bins a frame (a
triangle window, row-normalised), to the same voicing with probability 1 - switch_prob and to
the other with switch_prob. The dense matrix's zeros are log(tiny) ~ -708 in librosa, not -inf,
so every state can also be reached from the best state at that cost; we compare with that too.
Ties go to the lowest predecessor index, and the last frame's argmax to the lowest state.

This module is the CPU path (one vectorised step per frame); CUDA tensors go to the Triton
kernel in extract.kernels.viterbi, which runs the same recursion one program per utterance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

LOG_TINY = math.log(np.finfo(np.float64).tiny)


@dataclass(frozen=True)
class TransitionBands:
    """Log transition weights into each bin j from bins j - half + m, m in [0, width):
    `same` within a voicing, `switch` across; [n_bins, width] float64, -inf off the grid."""
    same: torch.Tensor
    switch: torch.Tensor

    @property
    def half(self) -> int:
        return self.same.shape[1] // 2

    @classmethod
    def from_librosa_definition(cls, n_bins: int, width: int,
                                switch_prob: float) -> TransitionBands:
        """transition_local(n_bins, width, window="triangle", wrap=False), then np.kron with
        transition_loop(2, 1 - switch_prob), then log(p + tiny): the same floats librosa gets."""
        if width % 2 != 1 or width > n_bins:
            raise ValueError(f"transition width must be odd and <= {n_bins}, got {width}")
        half = width // 2
        ramp = 2 * np.arange(1, half + 2) / (width + 1.0)       # scipy triang, odd length
        window = np.r_[ramp, ramp[-2::-1]]
        lpad = (n_bins - width) // 2
        dense = np.zeros((n_bins, n_bins))
        for i in range(n_bins):
            row = np.zeros(n_bins)
            row[lpad:lpad + width] = window
            row = np.roll(row, n_bins // 2 + i + 1)
            row[min(n_bins, i + half + 1):] = 0
            row[:max(0, i - half)] = 0
            dense[i] = row
        dense /= dense.sum(axis=1, keepdims=True)
        stay = 1 - switch_prob
        leave = (1.0 - stay) / 1
        tiny = np.finfo(np.float64).tiny
        src = np.arange(n_bins)[:, None] - half + np.arange(width)[None, :]   # [dst, m]
        valid = (src >= 0) & (src < n_bins)
        into = dense[np.clip(src, 0, n_bins - 1), np.arange(n_bins)[:, None]]
        band = {}
        for name, p in (("same", stay), ("switch", leave)):
            band[name] = torch.from_numpy(np.where(valid, np.log(p * into + tiny), -np.inf))
        return cls(**band)

    def to(self, device: torch.device) -> TransitionBands:
        return TransitionBands(self.same.to(device), self.switch.to(device))


def viterbi(log_obs: torch.Tensor, lengths: torch.Tensor, bands: TransitionBands) -> torch.Tensor:
    """log_obs [B, T, 2n] float64 (log(p + tiny)), lengths [B] -> states [B, T] int64.

    Utterance b is decoded over its first lengths[b] frames; later states are 0."""
    if log_obs.is_cuda:
        from extract.kernels.viterbi import viterbi_triton
        return viterbi_triton(log_obs, lengths, bands.to(log_obs.device))
    return viterbi_torch(log_obs, lengths, bands.to(log_obs.device))


def viterbi_torch(log_obs: torch.Tensor, lengths: torch.Tensor,
                  bands: TransitionBands) -> torch.Tensor:
    batch, steps, n_states = log_obs.shape
    n, half = n_states // 2, bands.half
    device = log_obs.device
    # weights[dst voicing, src voicing]: same on the diagonal, switch across
    weights = torch.stack([torch.stack([bands.same, bands.switch]),
                           torch.stack([bands.switch, bands.same])])        # [2, 2, n, W]
    band_offset = torch.arange(n, device=device) - half                     # + m -> src bin
    rows = torch.arange(batch, device=device)
    back = torch.zeros(batch, steps, n_states, dtype=torch.int16, device=device)
    value = log_obs[:, 0] + math.log(1 / n_states + np.finfo(np.float64).tiny)
    for t in range(1, steps):
        by_voicing = value.view(batch, 2, n)
        shifted = torch.nn.functional.pad(by_voicing, (half, half), value=-math.inf)
        windows = shifted.unfold(2, 2 * half + 1, 1)                         # [B, 2, n, W]
        best, m = (windows[:, None] + weights).max(dim=-1)                   # [B, dst, src, n]
        from_other = best[:, :, 1] > best[:, :, 0]                           # ties: voiced src
        best = torch.where(from_other, best[:, :, 1], best[:, :, 0])
        source = torch.where(from_other, m[:, :, 1], m[:, :, 0]) + band_offset + \
            n * from_other
        top, top_state = value.max(dim=1)                                    # first maximum
        jump = top[:, None, None] + LOG_TINY
        take = (jump > best) | ((jump == best) & (top_state[:, None, None] < source))
        best = torch.where(take, jump, best).reshape(batch, n_states)
        back[:, t] = torch.where(take, top_state[:, None, None], source).reshape(batch, -1)
        value = torch.where((t < lengths)[:, None], log_obs[:, t] + best, value)
    states = torch.zeros(batch, steps, dtype=torch.long, device=device)
    last = (lengths - 1).clamp(min=0)
    state = value.argmax(dim=1)
    states[rows, last] = state
    for t in range(steps - 1, 0, -1):
        active = t <= last
        previous = back[rows, t, state].long()
        state = torch.where(active, previous, state)
        states[:, t - 1] = torch.where(active, state, states[:, t - 1])
    return torch.where(torch.arange(steps, device=device)[None] < lengths[:, None], states, 0)
