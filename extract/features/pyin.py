"""Probabilistic YIN as librosa >= 0.11 computes it (librosa.pyin), batched in torch.

Per frame: librosa's CMND and parabolic shifts (extract.features.pitch), trough probabilities
under a Beta(2, 18) prior over 100 thresholds with Boltzmann rank weights, candidates binned
into 10-cent bins. Then Viterbi over bins x {voiced, unvoiced} with banded triangle transitions
and a voicing switch (extract.features.viterbi). Probabilities and decoding are float64, as in
librosa, so near-ties resolve the same way.

Shapes: frames [B, T, N] and frames per utterance [B] ->
f0 [B, T] (Hz, 0 when unvoiced), voiced [B, T] bool, voiced_prob [B, T] float32.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
import torch

from extract.config import BINS_PER_SEMITONE, pitch_bin_count, transition_width
from extract.features.pitch import (cumulative_mean_normalized_difference, parabolic_shift,
                                    period_range, trough_mask)
from extract.features.viterbi import TransitionBands, viterbi
from extract.stages import stage

N_THRESHOLDS = 100
BETA_B = 18                 # threshold prior Beta(2, BETA_B)
BOLTZMANN = 2.0
# Frames per block of per-frame work (frame_blocks): small on the CPU (cache: pitch on the 60
# benchmark clips took 925 ms in blocks of 2048, 955 in 1024, 979 in 4096, 1045 in 8192), large
# on a GPU (fewer launches and host syncs: on an H200, 131072 ran about 2x faster than 8192, and
# 262144 no faster).
ROWS_PER_CHUNK = {"cpu": 2048, "cuda": 131072}
ROWS_PER_GROUP = 256        # rows whose [rows, troughs, events] work torch does at once


def pyin(frames: torch.Tensor, num_frames: torch.Tensor, sample_rate: int, hop_length: int,
         fmin: float, fmax: float, switch_prob: float = 0.01, no_trough_prob: float = 0.01,
         max_transition_rate: float = 35.92) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pYIN over frames [B, T, N]; utterance b uses its first num_frames[b] frames.

    Frames past an utterance's end come back unvoiced with f0 0 and voiced_prob 0.
    """
    batch, steps, _ = frames.shape
    if batch * steps == 0:
        empty = frames.new_zeros(batch, steps)
        return empty, empty.bool(), empty
    n_bins = pitch_bin_count(fmin, fmax)
    with stage("pitch (pyin observations)"):
        log_obs, voiced_prob = observations(frames, sample_rate, fmin, fmax, no_trough_prob)
    with stage("pitch (pyin Viterbi)"):
        bands = transition_bands(n_bins, transition_width(max_transition_rate, hop_length,
                                                          sample_rate), switch_prob)
        states = viterbi(log_obs, num_frames, bands, overwrite=True)

    inside = torch.arange(steps, device=frames.device)[None] < num_frames[:, None]
    voiced = (states < n_bins) & inside
    freqs = fmin * 2.0 ** (torch.arange(n_bins, device=frames.device, dtype=torch.float64)
                           / (12 * BINS_PER_SEMITONE))
    f0 = torch.where(voiced, freqs[(states % n_bins).long()], 0.0).float()
    voiced_prob = torch.where(inside, voiced_prob, 0.0).float()
    return f0, voiced, voiced_prob


def observations(frames: torch.Tensor, sample_rate: int, fmin: float, fmax: float,
                 no_trough_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """pYIN's per-frame work: frames [B, T, N] -> (log state probabilities [B, T, 2 * bins]
    float64, voiced_prob [B, T] float64), in blocks of about ROWS_PER_CHUNK frames."""
    batch, steps, n = frames.shape
    min_period, max_period = period_range(sample_rate, fmin, fmax, n)
    n_bins = pitch_bin_count(fmin, fmax)
    log_obs = torch.empty(batch, steps, 2 * n_bins, dtype=torch.float64, device=frames.device)
    voiced_prob = torch.empty(batch, steps, dtype=torch.float64, device=frames.device)
    chunk = ROWS_PER_CHUNK.get(frames.device.type, ROWS_PER_CHUNK["cpu"])
    for block in frame_blocks(batch, steps, chunk):
        cmnd = cumulative_mean_normalized_difference(frames[block], min_period, max_period)
        voiced_prob[block] = log_observation_probabilities(
            cmnd.flatten(0, 1), sample_rate, fmin, min_period, n_bins, no_trough_prob,
            out=log_obs[block].view(-1, 2 * n_bins)).view(cmnd.shape[:2])
    return log_obs, voiced_prob


def frame_blocks(batch: int, steps: int, rows: int) -> Iterator[tuple[slice, slice]]:
    """(utterances, frames) index pairs that cover [batch, steps] in blocks of at most `rows`
    frames: whole utterances while one fits, else runs of one utterance's frames. Blocks are
    contiguous in [B, T, ...] tensors, and a block of a strided view of the audio is read
    without copying all frames first."""
    if steps == 0:
        return
    if steps <= rows:
        per_block = rows // steps
        for first in range(0, batch, per_block):
            yield slice(first, first + per_block), slice(None)
    else:
        for utterance in range(batch):
            for first in range(0, steps, rows):
                yield slice(utterance, utterance + 1), slice(first, first + rows)


@functools.lru_cache(maxsize=1)
def threshold_prior() -> tuple[np.ndarray, np.ndarray]:
    """(thresholds linspace(0, 1, 101)[1:], Beta(2, BETA_B) mass of each threshold's interval).

    The Beta(2, b) CDF is 1 - (1 - x)^b (1 + b x) (scipy.stats.beta.cdf, in closed form)."""
    x = np.linspace(0, 1, N_THRESHOLDS + 1)
    cdf = 1 - (1 - x) ** BETA_B * (1 + BETA_B * x)
    return x[1:], np.diff(cdf)


def log_observation_probabilities(cmnd: torch.Tensor, sample_rate: int, fmin: float,
                                  min_period: int, n_bins: int, no_trough_prob: float,
                                  out: torch.Tensor) -> torch.Tensor:
    """CMND rows [R, K] -> voiced_prob [R], with log(state probability + tiny) written into
    out [R, 2 * n_bins] float64.

    Each trough gets sum over thresholds of beta mass x Boltzmann weight of its rank among the
    troughs below that threshold; the global-minimum trough also gets no_trough_prob x the mass
    of the thresholds it is not below. Candidates land in 10-cent bins (the longest lag wins a
    shared bin; a candidate above the top bin is dropped). Unvoiced states share 1 - voiced_prob.
    The work runs on a flat list of all rows' troughs [N]. Rows hold from none to over a hundred
    (speech frames few, noise many), so [R, M] tensors padded to the busiest row would be mostly
    padding; the troughs are packed left in lag order to [R, M] only where a row's troughs
    meet: the trough sums and voiced_prob's sum.
    """
    rows, lags = cmnd.shape
    device = cmnd.device
    tiny = torch.finfo(torch.float64).tiny
    thresholds, beta = (torch.from_numpy(a).to(device) for a in threshold_prior())
    row, lag, slot, count = nonzero_by_row(trough_mask(cmnd))           # [N] x 3, [R]
    width = max(int(count.max()) if rows else 0, 1)
    height = cmnd[row, lag]
    # first threshold index each trough is below (N_THRESHOLDS: none)
    first_below = torch.searchsorted(thresholds, height.double(), right=True)
    beta_cum = torch.cat([beta.new_zeros(1), torch.cumsum(beta, 0)])   # mass below index t
    packed = torch.full((rows, width), N_THRESHOLDS, dtype=torch.long, device=device)
    packed[row, slot] = first_below
    probs = trough_probabilities(packed, count, beta_cum)[row, slot]

    lowest = first_lowest(height, row, rows)           # each row's global minimum, if any
    probs[lowest] += no_trough_prob * beta_cum[first_below[lowest]]

    inner = (lag > 0) & (lag < lags - 1)
    shift = torch.where(inner, parabolic_shift(cmnd[row, (lag - 1).clamp(min=0)], height,
                                               cmnd[row, (lag + 1).clamp(max=lags - 1)]), 0)
    # float64, as numpy promotes librosa's integer lags plus float32 shifts
    period = min_period + lag + shift.double()
    bins = torch.round(12 * BINS_PER_SEMITONE * torch.log2(sample_rate / period / fmin))
    bins = bins.clamp(0, n_bins).long()
    # troughs are >= 2 lags apart and |shift| < 1, so bins never rise along a row: a trough
    # wins its bin unless the next contributing trough of its row has the same bin
    (contributing,) = ((probs > 0) & (bins < n_bins)).nonzero(as_tuple=True)
    key = torch.stack([row[contributing], bins[contributing]])
    last_in_bin = torch.ones_like(contributing, dtype=torch.bool)
    last_in_bin[:-1] = (key[:, 1:] != key[:, :-1]).any(dim=0)
    wins = contributing[last_in_bin]
    win_row, win_probs = row[wins], probs[wins]
    won = torch.zeros(rows, width, dtype=torch.float64, device=device)
    won[win_row, slot[wins]] = win_probs
    voiced_prob = won.sum(dim=1).clamp(0, 1)
    out[:, :n_bins] = math.log(tiny)
    out[win_row, bins[wins]] = torch.log(win_probs + tiny)
    out[:, n_bins:] = torch.log((1 - voiced_prob) / n_bins + tiny)[:, None]
    return voiced_prob


def nonzero_by_row(mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mask [R, K] -> (row, column, position among its row's set elements) [N] of each set
    element, row-major (so in column order within a row); and set elements per row [R]."""
    row, column = mask.nonzero(as_tuple=True)
    count = torch.bincount(row, minlength=mask.shape[0])
    slot = torch.arange(row.numel(), device=mask.device) - (torch.cumsum(count, 0) - count)[row]
    return row, column, slot, count


def first_lowest(height: torch.Tensor, row: torch.Tensor, rows: int) -> torch.Tensor:
    """Index into a row-major trough list [N] of each row's first lowest trough (np.argmin),
    for the rows that have troughs."""
    lowest = height.new_full((rows,), math.inf).scatter_reduce(0, row, height, "amin")
    position = torch.arange(row.numel(), device=row.device)
    position = torch.where(height == lowest[row], position, row.numel())
    first = torch.full((rows,), row.numel(), device=row.device).scatter_reduce(0, row, position,
                                                                               "amin")
    return first[first < row.numel()]


def trough_probabilities(first_below: torch.Tensor, count: torch.Tensor, beta_cum: torch.Tensor,
                         kernel: bool | None = None) -> torch.Tensor:
    """[R, M] first-threshold indices of packed troughs (N_THRESHOLDS: never below, or
    padding), troughs per row [R], beta mass below each threshold index [N_THRESHOLDS + 1] ->
    [R, M] float64 sum_t beta[t] * Boltzmann weight.

    Which troughs are below a threshold, and so every rank and count, only changes at the
    thresholds some trough first goes below (a row's events). Between two events the weights
    are constant, so each trough sums over the row's events with the beta mass up to the
    next, not over all thresholds. A Triton kernel sums (kernels/trough_weights.py) where
    `kernel` says, by default on CUDA; torch otherwise, over rows grouped by trough count."""
    width = first_below.shape[1]
    k = torch.arange(width + 1, device=first_below.device, dtype=torch.float64)
    decay = torch.exp(-BOLTZMANN * k)                     # scipy.stats.boltzmann.pmf, by rank
    norm = (1 - math.exp(-BOLTZMANN)) / (1 - torch.exp(-BOLTZMANN * k))    # ... by count
    events, n_events = threshold_events(first_below)                      # [R, E + 1], [R]
    mass = beta_cum[events[:, 1:]] - beta_cum[events[:, :-1]]             # [R, E]
    if kernel is None:
        kernel = first_below.is_cuda
    if kernel:
        from extract.kernels.trough_weights import trough_weights_triton
        return trough_weights_triton(first_below, events, n_events, mass, norm, decay)
    return trough_weights_torch(first_below, count, events, n_events, mass, norm, decay)


def trough_weights_torch(first_below: torch.Tensor, count: torch.Tensor, events: torch.Tensor,
                         n_events: torch.Tensor, mass: torch.Tensor, norm: torch.Tensor,
                         decay: torch.Tensor) -> torch.Tensor:
    """trough_probabilities' sum over events in torch, in [rows, troughs, events] tensors for
    ROWS_PER_GROUP rows of similar trough counts at a time (arguments as
    extract.kernels.trough_weights.trough_weights_triton takes them, plus count)."""
    rows, width = first_below.shape
    probs = torch.zeros(rows, width, dtype=torch.float64, device=first_below.device)
    decay_by_position = torch.cat([decay.new_zeros(1), decay])
    by_count = torch.argsort(count)
    for start in range(0, rows, ROWS_PER_GROUP):
        group = by_count[start:start + ROWS_PER_GROUP]
        used, used_events = int(count[group].max()), int(n_events[group].max())
        if used_events == 0:
            continue
        below = (first_below.index_select(0, group)[:, :used, None]
                 <= events.index_select(0, group)[:, None, :used_events])     # [G, M, E]
        # 1 + rank among the troughs below the event's thresholds; 0 when not below
        position = torch.cumsum(below, dim=1, dtype=torch.int32).mul_(below)
        event_mass = norm[below.sum(dim=1)] * mass.index_select(0, group)[:, :used_events]
        weight = _lookup(decay_by_position, position)
        probs[group, :used] = (weight @ event_mass[..., None])[..., 0]
    return probs


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 1-D table (index_select: much faster than indexing on the CPU)."""
    return table.index_select(0, index.flatten()).view(index.shape)


def threshold_events(first_below: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[R, M] first-threshold indices -> (each row's distinct indices below N_THRESHOLDS,
    ascending, then N_THRESHOLDS as padding and end [R, E + 1]; how many [R]).

    Marks the indices each row has, then packs them left: no sort (a segmented sort was a
    fifth of the per-frame work on an H200)."""
    rows = first_below.shape[0]
    seen = torch.zeros(rows, N_THRESHOLDS + 1, dtype=torch.bool, device=first_below.device)
    seen.scatter_(1, first_below, True)
    row, index, slot, n_events = nonzero_by_row(seen[:, :N_THRESHOLDS])
    width = int(n_events.max()) if rows else 0
    events = torch.full((rows, width + 1), N_THRESHOLDS, dtype=torch.long, device=seen.device)
    events[row, slot] = index
    return events, n_events


@functools.lru_cache(maxsize=8)
def transition_bands(n_bins: int, width: int, switch_prob: float) -> TransitionBands:
    return TransitionBands.from_librosa_definition(n_bins, width, switch_prob)
