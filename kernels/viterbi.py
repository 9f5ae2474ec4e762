"""pYIN's banded Viterbi decoder as a Triton kernel: one program per utterance.

The same recursion as extract.features.viterbi.viterbi_torch (read that docstring for the
model). Each program keeps its utterance's voiced and unvoiced state values in registers and
loops over frames; the band's shifted predecessors are read back from a per-utterance scratch
row with a -inf margin on each side, back-pointers are stored as int16, and the program
backtracks at the end. Each bin's band weights (same voicing, then switch) are one row of a
table of the distinct bins' rows (TransitionBands.distinct_rows: 130 KB for pyin's 601 bins,
which can stay in L1), padded with -inf to whole rounds of UNROLL offsets. So the band loop
needs no masks, and a round's loads sit at constant offsets from two pointers per state.
UNROLL and num_warps change the speed only (benchmarks/gpu_check.py times several).
Runs on CUDA, and on the CPU under TRITON_INTERPRET=1 (tests, small sizes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import triton
import triton.language as tl

# Timed on an H200 (1000 utterances of 4 s): one bin a thread ran 41 ms, 2 bins a thread (half
# the warps resident) 42-43 ms; 3 or 17 offsets a round instead of 1 within 1 %
UNROLL = 1                  # band offsets per round
NUM_WARPS = 32              # the most: one bin a thread up to 1024 bins, at least 4 warps


@triton.jit
def _keep_better(candidate, offset, best, best_offset):
    """Strictly better candidates replace the best so far (ties keep the lower offset)."""
    better = candidate > best
    return tl.where(better, candidate, best), tl.where(better, offset, best_offset)


@triton.jit
def _first_max(value_a, state_a, value_b, state_b):
    """The larger value, and on a tie the lower state: np.argmax's first maximum."""
    a_wins = (value_a > value_b) | ((value_a == value_b) & (state_a < state_b))
    return tl.where(a_wins, value_a, value_b), tl.where(a_wins, state_a, state_b)


@triton.jit
def _top_state(voiced, unvoiced, j, n_bins):
    """(best value, its state) over both voicings in one reduction; bin j's voiced state is
    j, its unvoiced state n_bins + j."""
    voiced_first = voiced >= unvoiced
    return tl.reduce((tl.where(voiced_first, voiced, unvoiced),
                      tl.where(voiced_first, j, n_bins + j)), 0, _first_max)


@triton.jit
def _viterbi_kernel(log_obs_ptr, lengths_ptr, weights_ptr, row_ptr, log_init_and_tiny_ptr,
                    scratch_ptr, back_ptr, states_ptr, steps, n_bins,
                    WIDTH: tl.constexpr, OFFSETS: tl.constexpr, BLOCK: tl.constexpr,
                    UNROLL: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    length = tl.load(lengths_ptr + b).to(tl.int32)
    n_states = 2 * n_bins
    scratch_row: tl.constexpr = BLOCK + OFFSETS - 1     # bins with -inf margins
    margin: tl.constexpr = WIDTH // 2
    log_init = tl.load(log_init_and_tiny_ptr)
    log_tiny = tl.load(log_init_and_tiny_ptr + 1)
    j = tl.arange(0, BLOCK)
    in_range = j < n_bins
    # bin j's weight from bin j - margin + m: same at weights[m], switch at weights[OFFSETS + m]
    weights = weights_ptr + tl.load(row_ptr + j, mask=in_range, other=0) * (2 * OFFSETS)
    obs = log_obs_ptr + b * steps * n_states
    back = back_ptr + b * steps * n_states
    scratch = scratch_ptr + b * (2 * scratch_row)
    from_v = scratch + j                          # bin j - margin + m: from_v[m]
    from_u = scratch + scratch_row + j
    neg_inf = tl.full((BLOCK,), float("-inf"), tl.float64)

    voiced = tl.load(obs + j, mask=in_range, other=float("-inf")) + log_init
    unvoiced = tl.load(obs + n_bins + j, mask=in_range, other=float("-inf")) + log_init
    voiced = tl.where(in_range, voiced, neg_inf)
    unvoiced = tl.where(in_range, unvoiced, neg_inf)
    tl.store(from_v + margin, voiced)
    tl.store(from_u + margin, unvoiced)
    for t in range(1, steps):   # a fixed trip count; frames past `length` change nothing
        tl.debug_barrier()
        active = t < length
        frame = t * n_states            # its observations load while the band loop runs
        obs_v = tl.load(obs + frame + j, mask=in_range & active, other=float("-inf"))
        obs_u = tl.load(obs + frame + n_bins + j, mask=in_range & active, other=float("-inf"))
        top, top_state = _top_state(voiced, unvoiced, j, n_bins)
        # best[into][from] and its offset m
        best_vv, best_uv, best_vu, best_uu = neg_inf, neg_inf, neg_inf, neg_inf
        m_vv = tl.zeros((BLOCK,), tl.int32)
        m_uv, m_vu, m_uu = m_vv, m_vv, m_vv
        for first in range(0, OFFSETS, UNROLL):
            for step in tl.static_range(UNROLL):
                m = first + step
                value_v = tl.load(from_v + m)
                value_u = tl.load(from_u + m)
                w_same = tl.load(weights + m)
                w_switch = tl.load(weights + OFFSETS + m)
                best_vv, m_vv = _keep_better(value_v + w_same, m, best_vv, m_vv)
                best_uv, m_uv = _keep_better(value_u + w_switch, m, best_uv, m_uv)
                best_vu, m_vu = _keep_better(value_v + w_switch, m, best_vu, m_vu)
                best_uu, m_uu = _keep_better(value_u + w_same, m, best_uu, m_uu)
        source = j - margin
        other = best_uv > best_vv
        into_v = tl.where(other, best_uv, best_vv)
        src_v = tl.where(other, source + n_bins + m_uv, source + m_vv)
        other = best_uu > best_vu
        into_u = tl.where(other, best_uu, best_vu)
        src_u = tl.where(other, source + n_bins + m_uu, source + m_vu)
        jump = top + log_tiny
        take = (jump > into_v) | ((jump == into_v) & (top_state < src_v))
        into_v, src_v = tl.where(take, jump, into_v), tl.where(take, top_state, src_v)
        take = (jump > into_u) | ((jump == into_u) & (top_state < src_u))
        into_u, src_u = tl.where(take, jump, into_u), tl.where(take, top_state, src_u)
        tl.store(back + frame + j, src_v.to(tl.int16), mask=in_range & active)
        tl.store(back + frame + n_bins + j, src_u.to(tl.int16), mask=in_range & active)
        into_v += obs_v
        into_u += obs_u
        voiced = tl.where(in_range & active, into_v, tl.where(in_range, voiced, neg_inf))
        unvoiced = tl.where(in_range & active, into_u, tl.where(in_range, unvoiced, neg_inf))
        tl.debug_barrier()
        tl.store(from_v + margin, voiced)
        tl.store(from_u + margin, unvoiced)

    _, state = _top_state(voiced, unvoiced, j, n_bins)
    tl.store(states_ptr + b * steps + tl.maximum(length - 1, 0), state.to(tl.int64),
             mask=length > 0)
    for i in range(1, steps):
        t = length - i
        if_active = t >= 1
        state = tl.load(back + tl.maximum(t, 1) * n_states + state, mask=if_active,
                        other=state).to(tl.int32)
        tl.store(states_ptr + b * steps + t - 1, state.to(tl.int64), mask=if_active)


def kernel_constants(n_bins: int, width: int, unroll: int) -> dict[str, int]:
    """The kernel's compile-time arguments for n_bins bins and a band `width` wide."""
    return {"WIDTH": width, "OFFSETS": -(-width // unroll) * unroll,
            "BLOCK": triton.next_power_of_2(n_bins), "UNROLL": unroll}


def viterbi_triton(log_obs: torch.Tensor, lengths: torch.Tensor, bands, unroll: int = UNROLL,
                   num_warps: int | None = None, distinct: bool = True) -> torch.Tensor:
    """log_obs [B, T, 2n] float64, lengths [B], bands (TransitionBands) -> states [B, T] int64;
    states past an utterance's length are 0. distinct=False reads a weight table with every
    bin its own row, for comparison."""
    batch, steps, n_states = log_obs.shape
    n_bins, width = bands.same.shape
    if n_states != 2 * n_bins or n_states > np.iinfo(np.int16).max:
        raise ValueError(f"log_obs has {n_states} states; need 2 x {n_bins} and < 32768")
    device = log_obs.device
    log_obs = log_obs.contiguous()
    lengths = lengths.to(device=device, dtype=torch.int64).contiguous()
    log_init_and_tiny = torch.tensor([math.log(1 / n_states + np.finfo(np.float64).tiny),
                                      math.log(np.finfo(np.float64).tiny)],
                                     dtype=torch.float64, device=device)
    constants = kernel_constants(n_bins, width, unroll)
    block, offsets = constants["BLOCK"], constants["OFFSETS"]
    scratch = torch.full((batch, 2, block + offsets - 1), -math.inf, dtype=torch.float64,
                         device=device)
    back = torch.empty(batch, steps, n_states, dtype=torch.int16, device=device)
    states = torch.zeros(batch, steps, dtype=torch.int64, device=device)
    same, switch, row = (bands.distinct_rows if distinct else
                         (bands.same, bands.switch, torch.arange(n_bins)))
    weights = torch.nn.functional.pad(torch.stack([same, switch], 1), (0, offsets - width),
                                      value=-math.inf)          # [rows, 2, offsets]
    weights = weights.to(device=device, dtype=torch.float64).contiguous()
    row = row.to(device=device, dtype=torch.int32).contiguous()
    _viterbi_kernel[(batch,)](log_obs, lengths, weights, row, log_init_and_tiny, scratch, back,
                              states, steps, n_bins, **constants,
                              num_warps=num_warps or min(NUM_WARPS, max(4, block // 32)))
    return states
