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
# Rows per unfolded band op: [8, 2, 51, 601] float64 is 4 MB. On a shared 2-core machine,
# twice that scratch ran 5 % faster when it was quiet and 20-40 % slower when it was busy.
ROWS_PER_BAND = 8


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

    @functools.cached_property
    def from_voiced(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Out of each voiced bin s: weights [n_bins, 2W] into voiced bins s - half + i, then
        unvoiced ones (-inf off the grid), and those states' indices [n_bins, 2W] (clamped onto
        the grid)."""
        n, width = self.same.shape
        half = width // 2
        dest = torch.arange(n)[:, None] - half + torch.arange(width)[None]      # [s, i]
        on_grid = (dest >= 0) & (dest < n)
        dest = dest.clamp(0, n - 1).to(self.same.device)
        offset = (width - 1 - torch.arange(width)).expand(n, width).to(self.same.device)
        weights = [torch.where(on_grid.to(self.same.device), band[dest, offset], -math.inf)
                   for band in (self.same, self.switch)]
        return torch.cat(weights, 1), torch.cat([dest, n + dest], 1)

    def to(self, device: torch.device) -> TransitionBands:
        """These bands on `device`: themselves (and their cached tables) when already there."""
        if self.same.device == torch.device(device):
            return self
        return TransitionBands(self.same.to(device), self.switch.to(device))


def viterbi(log_obs: torch.Tensor, lengths: torch.Tensor, bands: TransitionBands,
            overwrite: bool = False) -> torch.Tensor:
    """log_obs [B, T, 2n] float64 (log(p + tiny)), lengths [B] -> states [B, T] int64.

    Utterance b is decoded over its first lengths[b] frames; later states are 0. overwrite:
    log_obs may be written over (on the CPU that can save a copy of it)."""
    if log_obs.is_cuda:
        from extract.kernels.viterbi import viterbi_triton
        return viterbi_triton(log_obs, lengths, bands)
    return viterbi_torch(log_obs, lengths, bands.to(log_obs.device), overwrite)


def viterbi_torch(log_obs: torch.Tensor, lengths: torch.Tensor, bands: TransitionBands,
                  overwrite: bool = False) -> torch.Tensor:
    """The recursion without back-pointers: the forward pass keeps each frame's state values
    (in log_obs itself where `overwrite` allows and the rows are in length order, else in a
    copy in that order), and backtracking recomputes the winning predecessor of the one
    decoded state per frame from the same floats."""
    if overwrite and length_ordered(lengths):
        return _backtrack(forward_values(log_obs, lengths, bands), lengths, bands)
    order = torch.argsort(lengths, descending=True, stable=True)
    lengths = lengths[order]
    values = forward_values(log_obs[order], lengths, bands)
    states = torch.empty(log_obs.shape[:2], dtype=torch.long, device=log_obs.device)
    states[order] = _backtrack(values, lengths, bands)
    return states


def length_ordered(lengths: torch.Tensor) -> bool:
    """Whether lengths [B] never fall or never rise."""
    steps = lengths[1:] - lengths[:-1]
    return bool((steps >= 0).all() or (steps <= 0).all())


def forward_values(log_obs: torch.Tensor, lengths: torch.Tensor,
                   bands: TransitionBands) -> torch.Tensor:
    """log_obs [B, T, 2n], lengths [B] in ascending or descending order -> the state values
    [B, T, 2n], written into log_obs, over each utterance's frames: value[0] = log_obs[0] +
    log(1 / 2n + tiny), value[t] = log_obs[t] + max over states s of value[t - 1][s] + log
    transition(s -> state), as librosa's forward pass computes them.

    The rows still running at a frame are a prefix (descending) or a suffix (ascending) of the
    batch. Each frame takes every state's best from the unvoiced sources (all of them) and the
    jump, then adds the voiced sources that could beat that somewhere: in pyin most voiced bins
    have no candidate (log(tiny) ~ -708), so their values are far below every state's best, and
    skipping them leaves every maximum, and so every value, unchanged."""
    if not length_ordered(lengths):
        raise ValueError("forward_values needs the rows in length order")
    batch, steps, n_states = log_obs.shape
    n, half = n_states // 2, bands.half
    running = torch.bincount(lengths.clamp(max=steps), minlength=steps + 1).flip(0).cumsum(0)
    running = running.flip(0).tolist()                              # rows with length >= t
    ascending = batch > 1 and bool(lengths[0] < lengths[-1])
    values = log_obs
    values[:, 0] += math.log(1 / n_states + np.finfo(np.float64).tiny)
    # [dst voicing, m, j]: weight into bin j from unvoiced bin j - half + m
    from_unvoiced = torch.stack([bands.switch, bands.same]).transpose(1, 2).contiguous()
    out_weights, out_states = bands.from_voiced
    heaviest = float(torch.max(out_weights))
    scratch = torch.empty(ROWS_PER_BAND, *from_unvoiced.shape, dtype=values.dtype,
                          device=values.device)
    padded = torch.full((batch, 1, n + 2 * half), -math.inf, dtype=values.dtype,
                        device=values.device)
    for t in range(1, steps):
        count = running[t + 1]
        if count == 0:
            break
        rows = slice(batch - count, batch) if ascending else slice(0, count)
        previous = values[rows, t - 1]
        shifted = padded[:count]
        shifted[..., half:half + n] = previous[:, None, n:]
        jump = previous.amax(dim=1, keepdim=True) + LOG_TINY
        best = torch.maximum(_band_max(shifted, from_unvoiced, scratch), jump)
        # a voiced source whose heaviest transition stays below every state's best never wins
        live = previous[:, :n] + heaviest >= best.amin(dim=1, keepdim=True)
        live = live.view(-1).nonzero()[:, 0]                 # row * n + bin
        live_bin = live % n
        live_state = live + (live - live_bin)                # row * 2n + bin
        reached = (previous.take(live_state)[:, None]
                   + out_weights.index_select(0, live_bin))                          # [L, 2W]
        into = (live_state - live_bin)[:, None] + out_states.index_select(0, live_bin)
        best.view(-1).scatter_reduce_(0, into.view(-1), reached.view(-1), "amax")
        values[rows, t] += best
    return values


def _band_max(shifted: torch.Tensor, weights: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """shifted [rows, 1, n + W - 1] (source values, -inf padded), weights [D, W, n] -> [rows,
    D * n]: each state's best predecessor value plus transition weight.

    All offsets at once over an unfolded view with the bins innermost (so the max over offsets
    runs across whole rows of bins), scratch.shape[0] rows at a time; scratch [chunk, D, W, n]
    is reused so that no step allocates large tensors."""
    rows, width, chunk = shifted.shape[0], weights.shape[1], scratch.shape[0]
    windows = shifted.unfold(2, width, 1).transpose(2, 3)            # [rows, 1, W, n]
    best = torch.empty(rows, weights.shape[0], weights.shape[2], dtype=shifted.dtype,
                       device=shifted.device)
    for start in range(0, rows, chunk):
        part = slice(start, start + chunk)
        size = windows[part].shape[0]
        torch.amax(torch.add(windows[part], weights, out=scratch[:size]), dim=2, out=best[part])
    return best.flatten(1)


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
