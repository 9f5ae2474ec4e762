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

import numpy as np
import torch

from extract.features.pitch import (cumulative_mean_normalized_difference, parabolic_shift,
                                    period_range, trough_mask)
from extract.features.viterbi import TransitionBands, viterbi
from extract.stages import stage

N_THRESHOLDS = 100
BETA_B = 18                 # threshold prior Beta(2, BETA_B)
BOLTZMANN = 2.0
BINS_PER_SEMITONE = 10      # resolution 0.1 semitone
# Frames per chunk of per-frame work: small on the CPU (cache), large on a GPU (fewer launches
# and host syncs: on an H200, 131072 ran about 2x faster than 8192, and 262144 no faster).
ROWS_PER_CHUNK = {"cpu": 8192, "cuda": 131072}
ROWS_PER_GROUP = 256        # rows whose [rows, troughs, events] work torch does at once


def pyin(frames: torch.Tensor, num_frames: torch.Tensor, sample_rate: int, hop_length: int,
         fmin: float, fmax: float, switch_prob: float = 0.01, no_trough_prob: float = 0.01,
         max_transition_rate: float = 35.92) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pYIN over frames [B, T, N]; utterance b uses its first num_frames[b] frames.

    Frames past an utterance's end come back unvoiced with f0 0 and voiced_prob 0.
    """
    batch, steps, _ = frames.shape
    n_bins = pitch_bin_count(fmin, fmax)
    with stage("pitch (pyin observations)"):
        log_obs, voiced_prob = observations(frames, sample_rate, fmin, fmax, no_trough_prob)
    with stage("pitch (pyin Viterbi)"):
        bands = transition_bands(n_bins, transition_width(max_transition_rate, hop_length,
                                                          sample_rate), switch_prob)
        states = viterbi(log_obs, num_frames, bands)

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
    float64, voiced_prob [B, T] float64), in chunks of ROWS_PER_CHUNK frames."""
    batch, steps, n = frames.shape
    min_period, max_period = period_range(sample_rate, fmin, fmax, n)
    n_bins = pitch_bin_count(fmin, fmax)
    flat = frames.reshape(-1, n)
    log_obs = torch.empty(flat.shape[0], 2 * n_bins, dtype=torch.float64, device=frames.device)
    voiced_prob = torch.empty(flat.shape[0], dtype=torch.float64, device=frames.device)
    chunk = ROWS_PER_CHUNK.get(frames.device.type, ROWS_PER_CHUNK["cpu"])
    for start in range(0, flat.shape[0], chunk):
        part = slice(start, start + chunk)
        cmnd = cumulative_mean_normalized_difference(flat[part], min_period, max_period)
        voiced_prob[part] = log_observation_probabilities(
            cmnd, sample_rate, fmin, min_period, n_bins, no_trough_prob, out=log_obs[part])
    return log_obs.reshape(batch, steps, -1), voiced_prob.reshape(batch, steps)


def pitch_bin_count(fmin: float, fmax: float) -> int:
    return math.floor(12 * BINS_PER_SEMITONE * math.log2(fmax / fmin)) + 1


def transition_width(max_transition_rate: float, hop_length: int, sample_rate: int) -> int:
    """Bins reachable in one frame, as librosa.pyin derives it (odd; 51 at 22.05 kHz, hop 256)."""
    semitones = round(max_transition_rate * 12 * hop_length / sample_rate)
    return semitones * BINS_PER_SEMITONE + 1


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
    The work runs on the troughs alone, packed to the left of each row in lag order.
    """
    rows, lags = cmnd.shape
    device = cmnd.device
    tiny = torch.finfo(torch.float64).tiny
    thresholds, beta = (torch.from_numpy(a).to(device) for a in threshold_prior())
    lag, count = packed_troughs(trough_mask(cmnd))                        # [R, M], [R]
    width = lag.shape[1]
    present = torch.arange(width, device=device) < count[:, None]
    at_troughs = cmnd.gather(1, lag)
    heights = torch.where(present, at_troughs, math.inf)
    # first threshold index each trough is below (N_THRESHOLDS: none); the rank at threshold t
    # counts the earlier troughs whose first index is <= t
    first_below = torch.searchsorted(thresholds, heights.double(), right=True)
    beta_cum = torch.cat([beta.new_zeros(1), torch.cumsum(beta, 0)])   # mass below index t
    probs = trough_probabilities(first_below, count, beta_cum)

    global_min = heights.argmin(dim=1)
    not_below = first_below.gather(1, global_min[:, None])[:, 0]
    bonus = torch.where(count > 0, no_trough_prob * beta_cum[not_below], 0.0)
    probs[torch.arange(rows, device=device), global_min] += bonus

    inner = (lag > 0) & (lag < lags - 1)
    shift = torch.where(inner, parabolic_shift(cmnd.gather(1, (lag - 1).clamp(min=0)),
                                               at_troughs,
                                               cmnd.gather(1, (lag + 1).clamp(max=lags - 1))), 0)
    # float64, as numpy promotes librosa's integer lags plus float32 shifts
    period = min_period + lag + shift.double()
    bins = torch.round(12 * BINS_PER_SEMITONE * torch.log2(sample_rate / period / fmin))
    bins = bins.clamp(0, n_bins).long()
    contributes = present & (probs > 0) & (bins < n_bins)
    # troughs are >= 2 lags apart and |shift| < 1, so bins never rise along a row: a trough
    # wins its bin unless the next contributing trough has the same bin (longest lag wins)
    later = torch.where(contributes, bins, -1).int().flip(1).cummax(dim=1).values.flip(1)
    later = torch.nn.functional.pad(later[:, 1:], (0, 1), value=-1)
    wins = contributes & (later != bins)
    voiced_prob = torch.where(wins, probs, 0.0).sum(dim=1).clamp(0, 1)
    out[:, :n_bins] = math.log(tiny)
    # the other troughs land on column n_bins, which the unvoiced values then overwrite
    out.scatter_(1, torch.where(wins, bins, n_bins), torch.log(probs + tiny))
    out[:, n_bins:] = torch.log((1 - voiced_prob) / n_bins + tiny)[:, None]
    return voiced_prob


def packed_troughs(trough: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Trough mask [R, K] -> (trough lags packed left in lag order [R, M], padded with 0;
    troughs per row [R]); M is the most any row has."""
    rows = trough.shape[0]
    count = trough.sum(dim=1)
    row, lag = trough.nonzero(as_tuple=True)                  # row-major: lag order per row
    slot = torch.arange(row.numel(), device=trough.device) - (torch.cumsum(count, 0) - count)[row]
    packed = torch.zeros(rows, max(int(count.max()) if rows else 0, 1), dtype=torch.long,
                         device=trough.device)
    packed[row, slot] = lag
    return packed, count


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
    by_count = torch.argsort(count)
    for start in range(0, rows, ROWS_PER_GROUP):
        group = by_count[start:start + ROWS_PER_GROUP]
        used, used_events = int(count[group].max()), int(n_events[group].max())
        if used_events == 0:
            continue
        below = (first_below.index_select(0, group)[:, :used, None]
                 <= events.index_select(0, group)[:, None, :used_events])     # [G, M, E]
        rank = torch.cumsum(below, dim=1) - 1
        below_count = below.sum(dim=1, keepdim=True)
        weight = norm[below_count] * _lookup(decay, rank.clamp(min=0))
        weight = torch.where(below, weight, 0.0)
        probs[group, :used] = (weight @ mass.index_select(0, group)[:, :used_events, None])[..., 0]
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
    device = first_below.device
    seen = torch.zeros(rows, N_THRESHOLDS + 1, dtype=torch.bool, device=device)
    seen.scatter_(1, first_below, True)
    seen = seen[:, :N_THRESHOLDS]
    n_events = seen.sum(dim=1)
    width = int(n_events.max()) if rows else 0
    slot = torch.where(seen, torch.cumsum(seen, dim=1) - 1, width + 1)
    events = torch.full((rows, width + 2), N_THRESHOLDS, dtype=torch.long, device=device)
    events.scatter_(1, slot, torch.arange(N_THRESHOLDS, device=device).expand(rows, -1))
    return events[:, :width + 1], n_events


@functools.lru_cache(maxsize=8)
def transition_bands(n_bins: int, width: int, switch_prob: float) -> TransitionBands:
    return TransitionBands.from_librosa_definition(n_bins, width, switch_prob)
