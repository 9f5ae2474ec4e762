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

from extract.features.pitch import (cumulative_mean_normalized_difference, parabolic_shifts,
                                    period_range, trough_mask)
from extract.features.viterbi import TransitionBands, viterbi

N_THRESHOLDS = 100
BETA_B = 18                 # threshold prior Beta(2, BETA_B)
BOLTZMANN = 2.0
BINS_PER_SEMITONE = 10      # resolution 0.1 semitone
MAX_ROWS_PER_CHUNK = 8192
ROWS_PER_GROUP = {"cpu": 256, "cuda": 4096}   # rows whose [rows, troughs, thresholds] work
                                              # runs at once: small on the CPU (cache), large
                                              # on a GPU (fewer launches and host syncs)


def pyin(frames: torch.Tensor, num_frames: torch.Tensor, sample_rate: int, hop_length: int,
         fmin: float, fmax: float, switch_prob: float = 0.01, no_trough_prob: float = 0.01,
         max_transition_rate: float = 35.92) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pYIN over frames [B, T, N]; utterance b uses its first num_frames[b] frames.

    Frames past an utterance's end come back unvoiced with f0 0 and voiced_prob 0.
    """
    batch, steps, n = frames.shape
    min_period, max_period = period_range(sample_rate, fmin, fmax, n)
    n_bins = pitch_bin_count(fmin, fmax)
    flat = frames.reshape(-1, n)
    log_obs = torch.empty(flat.shape[0], 2 * n_bins, dtype=torch.float64, device=frames.device)
    voiced_prob = torch.empty(flat.shape[0], dtype=torch.float64, device=frames.device)
    for start in range(0, flat.shape[0], MAX_ROWS_PER_CHUNK):
        part = slice(start, start + MAX_ROWS_PER_CHUNK)
        cmnd = cumulative_mean_normalized_difference(flat[part], min_period, max_period)
        obs, voiced_prob[part] = observation_probabilities(
            cmnd, parabolic_shifts(cmnd), sample_rate, fmin, min_period, n_bins, no_trough_prob)
        log_obs[part] = torch.log(obs + torch.finfo(torch.float64).tiny)
    bands = transition_bands(n_bins, transition_width(max_transition_rate, hop_length,
                                                      sample_rate), switch_prob)
    states = viterbi(log_obs.reshape(batch, steps, -1), num_frames, bands)

    inside = torch.arange(steps, device=frames.device)[None] < num_frames[:, None]
    voiced = (states < n_bins) & inside
    freqs = fmin * 2.0 ** (torch.arange(n_bins, device=frames.device, dtype=torch.float64)
                           / (12 * BINS_PER_SEMITONE))
    f0 = torch.where(voiced, freqs[(states % n_bins).long()], 0.0).float()
    voiced_prob = torch.where(inside, voiced_prob.reshape(batch, steps), 0.0).float()
    return f0, voiced, voiced_prob


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


def observation_probabilities(cmnd: torch.Tensor, shifts: torch.Tensor, sample_rate: int,
                              fmin: float, min_period: int, n_bins: int,
                              no_trough_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CMND rows [R, K] -> (state probabilities [R, 2 * n_bins] float64, voiced_prob [R]).

    Each trough gets sum over thresholds of beta mass x Boltzmann weight of its rank among the
    troughs below that threshold; the global-minimum trough also gets no_trough_prob x the mass
    of the thresholds it is not below. Candidates land in 10-cent bins (the longest lag wins a
    shared bin; a candidate above the top bin is dropped). Unvoiced states share 1 - voiced_prob.
    """
    rows, lags = cmnd.shape
    device = cmnd.device
    thresholds, beta = (torch.from_numpy(a).to(device) for a in threshold_prior())
    trough = trough_mask(cmnd)
    # first threshold index each trough is below (N_THRESHOLDS: none); the rank at threshold t
    # counts the earlier troughs whose first index is <= t
    first_below = torch.searchsorted(thresholds, cmnd.double().contiguous(), right=True)
    first_below = torch.where(trough, first_below, N_THRESHOLDS)
    probs = trough_probabilities(first_below, beta)

    heights = torch.where(trough, cmnd, math.inf)
    global_min = heights.argmin(dim=1)
    not_below = first_below.gather(1, global_min[:, None])[:, 0]
    beta_cum = torch.cat([beta.new_zeros(1), torch.cumsum(beta, 0)])
    has_trough = trough.any(dim=1)
    bonus = torch.where(has_trough, no_trough_prob * beta_cum[not_below], 0.0)
    probs[torch.arange(rows, device=device), global_min] += bonus

    # float64, as numpy promotes librosa's integer lags plus float32 shifts
    period = min_period + torch.arange(lags, device=device) + shifts.double()
    bins = torch.round(12 * BINS_PER_SEMITONE * torch.log2(sample_rate / period / fmin))
    bins = bins.clamp(0, n_bins).long()
    lag_index = torch.arange(lags, device=device).expand(rows, lags)
    contributes = (probs > 0) & (bins < n_bins)
    winner = torch.full((rows, n_bins + 1), -1, dtype=torch.long, device=device)
    winner.scatter_reduce_(1, torch.where(contributes, bins, n_bins),
                           torch.where(contributes, lag_index, -1), "amax")
    winner = winner[:, :n_bins]
    voiced_obs = torch.where(winner >= 0, probs.gather(1, winner.clamp(min=0)), 0.0)
    voiced_prob = voiced_obs.sum(dim=1).clamp(0, 1)
    unvoiced_obs = ((1 - voiced_prob) / n_bins)[:, None].expand(rows, n_bins)
    return torch.cat([voiced_obs, unvoiced_obs], dim=1), voiced_prob


def trough_probabilities(first_below: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """[R, K] first-threshold indices -> [R, K] float64 sum_t beta[t] * Boltzmann weight.

    Only lags below some threshold take part. They are packed to the left in lag order, and
    rows are grouped by how many they have, so the [rows, troughs, thresholds] work follows
    the troughs, not the lags."""
    rows, lags = first_below.shape
    device = first_below.device
    active = first_below < N_THRESHOLDS
    counts = active.sum(dim=1)
    order = torch.sort((~active).to(torch.uint8), dim=1, stable=True).indices
    packed = first_below.gather(1, order)
    k = torch.arange(lags + 1, device=device, dtype=torch.float64)
    decay = torch.exp(-BOLTZMANN * k)                     # scipy.stats.boltzmann.pmf, by rank
    norm = (1 - math.exp(-BOLTZMANN)) / (1 - torch.exp(-BOLTZMANN * k))    # ... by count
    thresholds = torch.arange(N_THRESHOLDS, device=device)
    per_trough = torch.zeros(rows, lags, dtype=torch.float64, device=device)
    by_count = torch.argsort(counts)
    step = ROWS_PER_GROUP.get(device.type, ROWS_PER_GROUP["cpu"])
    for start in range(0, rows, step):
        group = by_count[start:start + step]
        width = int(counts[group].max())
        if width == 0:
            continue
        below = packed[group, :width, None] <= thresholds                   # [G, M, T]
        rank = torch.cumsum(below, dim=1) - 1
        count = below.sum(dim=1, keepdim=True)
        weight = norm[count] * decay[rank.clamp(min=0)]
        per_trough[group, :width] = torch.where(below, weight, 0.0) @ beta
    return torch.zeros_like(per_trough).scatter_(1, order, per_trough)


@functools.lru_cache(maxsize=8)
def transition_bands(n_bins: int, width: int, switch_prob: float) -> TransitionBands:
    return TransitionBands.from_librosa_definition(n_bins, width, switch_prob)
