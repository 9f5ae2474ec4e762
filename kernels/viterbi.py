"""pYIN's banded Viterbi decoder as a Triton kernel: one program per utterance.

The same recursion as extract.features.viterbi.viterbi_torch (read that docstring for the
model). Each program keeps its utterance's voiced and unvoiced state values in registers and
loops over frames; the band's shifted predecessors are read back from a small per-utterance
scratch row, back-pointers are stored as int16, and the program backtracks at the end. The band
weights come from tables of the distinct bins' weights through each bin's column
(TransitionBands.distinct_columns): 130 KB for pyin's 601 bins, which can stay in L1, where the
full tables (490 KB) cannot. The band's offsets are taken UNROLL at a time, so that their loads
can be in flight together; UNROLL and num_warps change the speed only (benchmarks/gpu_check.py
times several).
Runs on CUDA, and on the CPU under TRITON_INTERPRET=1 (tests, small sizes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import triton
import triton.language as tl

UNROLL = 1                  # band offsets per round: the setting measured on an H200
NUM_WARPS = 8               # for 512 states or more; 4 below


@triton.jit
def _keep_better(candidate, source, best, best_source):
    """Strictly better candidates replace the best so far (ties keep the lower index)."""
    better = candidate > best
    return tl.where(better, candidate, best), tl.where(better, source, best_source)


@triton.jit
def _viterbi_kernel(log_obs_ptr, lengths_ptr, same_ptr, switch_ptr, column_ptr, constants_ptr,
                    scratch_ptr, back_ptr, states_ptr, steps, n_bins, n_columns,
                    WIDTH: tl.constexpr, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    length = tl.load(lengths_ptr + b).to(tl.int32)
    n_states = 2 * n_bins
    log_init = tl.load(constants_ptr)
    log_tiny = tl.load(constants_ptr + 1)
    j = tl.arange(0, BLOCK)
    in_range = j < n_bins
    column = tl.load(column_ptr + j, mask=in_range, other=0)
    obs = log_obs_ptr + b * steps * n_states
    back = back_ptr + b * steps * n_states
    scratch = scratch_ptr + b * n_states
    neg_inf = tl.full((BLOCK,), float("-inf"), tl.float64)

    voiced = tl.load(obs + j, mask=in_range, other=float("-inf")) + log_init
    unvoiced = tl.load(obs + n_bins + j, mask=in_range, other=float("-inf")) + log_init
    voiced = tl.where(in_range, voiced, neg_inf)
    unvoiced = tl.where(in_range, unvoiced, neg_inf)
    tl.store(scratch + j, voiced, mask=in_range)
    tl.store(scratch + n_bins + j, unvoiced, mask=in_range)
    for t in range(1, steps):   # a fixed trip count; frames past `length` change nothing
        tl.debug_barrier()
        active = t < length
        top_v = tl.max(voiced, axis=0)
        top_u = tl.max(unvoiced, axis=0)
        top = tl.maximum(top_v, top_u)
        top_state = tl.where(top_v >= top_u, tl.argmax(voiced, axis=0),
                             n_bins + tl.argmax(unvoiced, axis=0))
        # best[into][from] and its source state
        best_vv, best_uv, best_vu, best_uu = neg_inf, neg_inf, neg_inf, neg_inf
        src_vv = tl.zeros((BLOCK,), tl.int32)
        src_uv, src_vu, src_uu = src_vv, src_vv, src_vv
        for first in range(0, WIDTH, UNROLL):
            for step in tl.static_range(UNROLL):
                m = first + step
                k = j - WIDTH // 2 + m
                ok = in_range & (k >= 0) & (k < n_bins) & (m < WIDTH)
                from_v = tl.load(scratch + k, mask=ok, other=float("-inf"))
                from_u = tl.load(scratch + n_bins + k, mask=ok, other=float("-inf"))
                weight = m * n_columns + column
                w_same = tl.load(same_ptr + weight, mask=ok, other=float("-inf"))
                w_switch = tl.load(switch_ptr + weight, mask=ok, other=float("-inf"))
                best_vv, src_vv = _keep_better(from_v + w_same, k, best_vv, src_vv)
                best_uv, src_uv = _keep_better(from_u + w_switch, k + n_bins, best_uv, src_uv)
                best_vu, src_vu = _keep_better(from_v + w_switch, k, best_vu, src_vu)
                best_uu, src_uu = _keep_better(from_u + w_same, k + n_bins, best_uu, src_uu)
        other = best_uv > best_vv
        into_v, src_v = tl.where(other, best_uv, best_vv), tl.where(other, src_uv, src_vv)
        other = best_uu > best_vu
        into_u, src_u = tl.where(other, best_uu, best_vu), tl.where(other, src_uu, src_vu)
        jump = top + log_tiny
        take = (jump > into_v) | ((jump == into_v) & (top_state < src_v))
        into_v, src_v = tl.where(take, jump, into_v), tl.where(take, top_state, src_v)
        take = (jump > into_u) | ((jump == into_u) & (top_state < src_u))
        into_u, src_u = tl.where(take, jump, into_u), tl.where(take, top_state, src_u)
        row = t * n_states
        tl.store(back + row + j, src_v.to(tl.int16), mask=in_range & active)
        tl.store(back + row + n_bins + j, src_u.to(tl.int16), mask=in_range & active)
        into_v += tl.load(obs + row + j, mask=in_range & active, other=float("-inf"))
        into_u += tl.load(obs + row + n_bins + j, mask=in_range & active, other=float("-inf"))
        voiced = tl.where(in_range & active, into_v, tl.where(in_range, voiced, neg_inf))
        unvoiced = tl.where(in_range & active, into_u, tl.where(in_range, unvoiced, neg_inf))
        tl.debug_barrier()
        tl.store(scratch + j, voiced, mask=in_range)
        tl.store(scratch + n_bins + j, unvoiced, mask=in_range)

    top_v = tl.max(voiced, axis=0)
    top_u = tl.max(unvoiced, axis=0)
    state = tl.where(top_v >= top_u, tl.argmax(voiced, axis=0),
                     n_bins + tl.argmax(unvoiced, axis=0)).to(tl.int32)
    tl.store(states_ptr + b * steps + tl.maximum(length - 1, 0), state.to(tl.int64),
             mask=length > 0)
    for i in range(1, steps):
        t = length - i
        if_active = t >= 1
        state = tl.load(back + tl.maximum(t, 1) * n_states + state, mask=if_active,
                        other=state).to(tl.int32)
        tl.store(states_ptr + b * steps + t - 1, state.to(tl.int64), mask=if_active)


def viterbi_triton(log_obs: torch.Tensor, lengths: torch.Tensor, bands, unroll: int = UNROLL,
                   num_warps: int | None = None, distinct: bool = True) -> torch.Tensor:
    """log_obs [B, T, 2n] float64, lengths [B], bands (TransitionBands) -> states [B, T] int64;
    states past an utterance's length are 0. distinct=False reads the full weight table (every
    bin its own column), for comparison."""
    batch, steps, n_states = log_obs.shape
    n_bins, width = bands.same.shape
    if n_states != 2 * n_bins or n_states > np.iinfo(np.int16).max:
        raise ValueError(f"log_obs has {n_states} states; need 2 x {n_bins} and < 32768")
    device = log_obs.device
    log_obs = log_obs.contiguous()
    lengths = lengths.to(device=device, dtype=torch.int64).contiguous()
    constants = torch.tensor([math.log(1 / n_states + np.finfo(np.float64).tiny),
                              math.log(np.finfo(np.float64).tiny)], dtype=torch.float64,
                             device=device)
    scratch = torch.empty(batch, n_states, dtype=torch.float64, device=device)
    back = torch.empty(batch, steps, n_states, dtype=torch.int16, device=device)
    states = torch.zeros(batch, steps, dtype=torch.int64, device=device)
    block = triton.next_power_of_2(n_bins)
    same, switch, column = (bands.distinct_columns if distinct else
                            (bands.same.t(), bands.switch.t(), torch.arange(n_bins)))
    same, switch, column = (x.to(device=device, dtype=dtype).contiguous() for x, dtype in
                            ((same, torch.float64), (switch, torch.float64),
                             (column, torch.int32)))
    _viterbi_kernel[(batch,)](log_obs, lengths, same, switch, column, constants, scratch, back,
                              states, steps, n_bins, same.shape[1], WIDTH=width, BLOCK=block,
                              UNROLL=unroll,
                              num_warps=num_warps or (NUM_WARPS if block >= 512 else 4))
    return states
