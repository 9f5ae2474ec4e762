"""Viterbi decoding of pYIN's state sequence with banded transitions, exactly as
librosa.sequence.viterbi decodes the dense matrix librosa.pyin builds.

States are n voiced bins then n unvoiced bins. A bin moves at most `half` bins a frame (a
triangle window, row-normalised), to the same voicing with probability 1 - switch_prob and to
the other with switch_prob. The dense matrix's zeros are log(tiny) ~ -708 in librosa, not -inf,
so every state can also be reached from the best state at that cost; we compare with that too.
Ties go to the lowest predecessor index, and the last frame's argmax to the lowest state.

This module is the CPU path (a few large ops per frame); CUDA tensors go to the Triton kernel
in extract.kernels.viterbi, which runs the same recursion one program per utterance and keeps
int16 back-pointers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

LOG_TINY = math.log(np.finfo(np.float64).tiny)
# Rows per unfolded band op: [4, 2, 2, 51, 601] float64 is 4 MB. On a shared 2-core machine, 8
# rows ran 5 % faster when it was quiet and 20-40 % slower when other tenants were busy.
ROWS_PER_BAND = 4


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

    @functools.cached_property
    def distinct_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The weights of the distinct bins, same and switch [rows, width] (numbered in order
        of their first bin), and each bin's row [n_bins]: the Triton kernel's tables. 601 bins
        have 163 (the edges; interior bins whose sums differ in the last bit)."""
        weights = torch.cat([self.same, self.switch], 1).cpu().numpy()
        _, first, row = np.unique(weights, axis=0, return_index=True, return_inverse=True)
        order = np.argsort(first)
        renumber = np.empty_like(order)
        renumber[order] = np.arange(len(order))
        table = torch.from_numpy(weights[first[order]])               # [rows, 2 * width]
        width = self.same.shape[1]
        return table[:, :width], table[:, width:], torch.from_numpy(renumber[row.reshape(-1)])

    def to(self, device: torch.device) -> TransitionBands:
        return TransitionBands(self.same.to(device), self.switch.to(device))


def viterbi(log_obs: torch.Tensor, lengths: torch.Tensor, bands: TransitionBands) -> torch.Tensor:
    """log_obs [B, T, 2n] float64 (log(p + tiny)), lengths [B] -> states [B, T] int64.

    Utterance b is decoded over its first lengths[b] frames; later states are 0."""
    if log_obs.is_cuda:
        from extract.kernels.viterbi import viterbi_triton
        return viterbi_triton(log_obs, lengths, bands)
    return viterbi_torch(log_obs, lengths, bands.to(log_obs.device))


def viterbi_torch(log_obs: torch.Tensor, lengths: torch.Tensor,
                  bands: TransitionBands) -> torch.Tensor:
    """The recursion without back-pointers: the forward pass keeps each frame's state values
    (in place of log_obs, which it no longer needs), and backtracking recomputes the winning
    predecessor of the one decoded state per frame from the same floats."""
    batch, steps, n_states = log_obs.shape
    n, half = n_states // 2, bands.half
    order = torch.argsort(lengths, descending=True, stable=True)   # running rows: a prefix
    lengths = lengths[order]
    running = torch.bincount(lengths.clamp(max=steps), minlength=steps + 1).flip(0).cumsum(0)
    running = running.flip(0).tolist()                              # rows with length >= t
    values = log_obs[order]
    values[:, 0] += math.log(1 / n_states + np.finfo(np.float64).tiny)
    # [dst voicing, src voicing, m, j]: weight into bin j from bin j - half + m
    weights = torch.stack([torch.stack([bands.same, bands.switch]),
                           torch.stack([bands.switch, bands.same])]).transpose(2, 3).contiguous()
    scratch = torch.empty(ROWS_PER_BAND, *weights.shape, dtype=values.dtype,
                          device=values.device)
    padded = torch.full((batch, 1, 2, n + 2 * half), -math.inf, dtype=values.dtype,
                        device=values.device)
    for t in range(1, steps):
        rows = running[t + 1]
        if rows == 0:
            break
        previous = values[:rows, t - 1]
        shifted = padded[:rows]
        shifted[..., half:half + n] = previous.view(rows, 1, 2, n)
        jump = previous.amax(dim=1, keepdim=True) + LOG_TINY
        values[:rows, t] += torch.maximum(_band_max(shifted, weights, scratch), jump)
    states = torch.empty(batch, steps, dtype=torch.long, device=log_obs.device)
    states[order] = _backtrack(values, lengths, bands)
    return states


def _band_max(shifted: torch.Tensor, weights: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """shifted [rows, 1, 2, n + W - 1] (by source voicing, -inf padded), weights
    [2, 2, W, n] -> [rows, 2n]: each state's best predecessor value plus transition weight.

    All offsets at once over an unfolded view with the bins innermost (so the max over offsets
    runs across whole rows of bins), scratch.shape[0] rows at a time; scratch [chunk, 2, 2, W,
    n] is reused so that no step allocates large tensors."""
    rows, width, chunk = shifted.shape[0], weights.shape[2], scratch.shape[0]
    windows = shifted.unfold(3, width, 1).transpose(3, 4)            # [rows, 1, 2, W, n]
    best = torch.empty(rows, 2, 2, weights.shape[3], dtype=shifted.dtype, device=shifted.device)
    for start in range(0, rows, chunk):
        part = slice(start, start + chunk)
        size = windows[part].shape[0]
        torch.amax(torch.add(windows[part], weights, out=scratch[:size]), dim=3, out=best[part])
    return best.amax(dim=2).flatten(1)


def _backtrack(values: torch.Tensor, lengths: torch.Tensor,
               bands: TransitionBands) -> torch.Tensor:
    """Each decoded state's winning predecessor, recomputed from the forward values
    [B, T, 2n]: its band from both voicings in state order, then the jump from the frame's
    best state, which wins ties only with a lower index."""
    batch, steps, n_states = values.shape
    n, half = n_states // 2, bands.half
    width = 2 * half + 1
    # [state, src voicing * W + m]: weight into the state from bin j - half + m of each voicing
    into = torch.cat([torch.cat([bands.same, bands.switch], 1),
                      torch.cat([bands.switch, bands.same], 1)])
    reach = torch.cat([torch.arange(width), n + torch.arange(width)]).to(values.device) - half
    top, top_state = values.max(dim=2)
    jump = top + LOG_TINY
    rows = torch.arange(batch, device=values.device)
    last = (lengths - 1).clamp(min=0)
    state = values[rows, last].argmax(dim=1)
    states = torch.zeros(batch, steps, dtype=torch.long, device=values.device)
    states[rows, last] = state
    for t in range(steps - 1, 0, -1):
        j = state % n
        # off-grid sources are clamped onto the grid; their weight is -inf
        sources = (j[:, None] + reach).clamp(0, n_states - 1)
        best, pick = (values[:, t - 1].gather(1, sources) + into.index_select(0, state)).max(dim=1)
        source = sources.gather(1, pick[:, None])[:, 0]
        take = (jump[:, t - 1] > best) | ((jump[:, t - 1] == best) & (top_state[:, t - 1] < source))
        state = torch.where(t <= last, torch.where(take, top_state[:, t - 1], source), state)
        states[:, t - 1] = state
    return torch.where(torch.arange(steps, device=values.device)[None] < lengths[:, None],
                       states, 0)
