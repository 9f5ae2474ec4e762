"""pYIN's trough probabilities as a Triton kernel: the sum over a frame's threshold events of
each trough's Boltzmann weight times the events' Beta mass, for a block of frames at a time.

The same sum as the torch path in extract.features.pyin.trough_probabilities (read that
docstring for the model), without its [rows, troughs, events] tensors: on a GPU those carried
40 % of the per-frame work's memory traffic. Each program holds a [ROWS, TROUGHS] block of
first-threshold indices in registers and loops over its rows' events: the troughs below an
event, their ranks (a cumulative sum along the row), their count, then weight x mass into an
accumulator. Runs on CUDA, and on the CPU under TRITON_INTERPRET=1 (tests, small sizes).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# On an H200 (345,000 frames): 1024 or 2048 elements at 4 or 8 warps within 5 %, 4096 at 8
# warps 9 % slower
ELEMENTS = 1024             # a program's rows x troughs (a power of two)
NUM_WARPS = 4


@triton.jit
def _trough_weights_kernel(first_below_ptr, events_ptr, mass_ptr, n_events_ptr, norm_ptr,
                           decay_ptr, probs_ptr, rows, width, event_columns,
                           ROWS: tl.constexpr, TROUGHS: tl.constexpr):
    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    trough = tl.arange(0, TROUGHS)
    row_ok = row < rows
    inside = row_ok[:, None] & (trough[None, :] < width)
    cell = row.to(tl.int64)[:, None] * width + trough[None, :]
    # padding troughs are below no event (events are < N_THRESHOLDS)
    first_below = tl.load(first_below_ptr + cell, mask=inside, other=1 << 30).to(tl.int32)
    n_events = tl.load(n_events_ptr + row, mask=row_ok, other=0).to(tl.int32)
    probs = tl.zeros((ROWS, TROUGHS), tl.float64)
    for e in range(0, tl.max(n_events, axis=0)):
        has_event = row_ok & (e < n_events)
        event = tl.load(events_ptr + row.to(tl.int64) * event_columns + e, mask=has_event,
                        other=-1).to(tl.int32)
        mass = tl.load(mass_ptr + row.to(tl.int64) * (event_columns - 1) + e, mask=has_event,
                       other=0.0)
        below = first_below <= event[:, None]
        rank = tl.cumsum(below.to(tl.int32), axis=1) - 1
        count = tl.sum(below.to(tl.int32), axis=1)
        norm = tl.load(norm_ptr + count)
        weight = norm[:, None] * tl.load(decay_ptr + tl.maximum(rank, 0))
        probs += tl.where(below, weight * mass[:, None], 0.0)
    tl.store(probs_ptr + cell, probs, mask=inside)


def trough_weights_triton(first_below: torch.Tensor, events: torch.Tensor,
                          n_events: torch.Tensor, mass: torch.Tensor, norm: torch.Tensor,
                          decay: torch.Tensor) -> torch.Tensor:
    """first_below [R, M] (first threshold index per trough), events [R, E + 1] and n_events
    [R] (extract.features.pyin.threshold_events), mass [R, E] float64 (Beta mass from each
    event to the next), norm and decay [M + 1] float64 (Boltzmann by count and by rank) ->
    probs [R, M] float64."""
    rows, width = first_below.shape
    troughs = triton.next_power_of_2(max(width, 1))
    block_rows = max(1, ELEMENTS // troughs)
    probs = torch.empty(rows, width, dtype=torch.float64, device=first_below.device)
    if rows == 0:
        return probs
    _trough_weights_kernel[(triton.cdiv(rows, block_rows),)](
        first_below.contiguous(), events.contiguous(), mass.contiguous(), n_events.contiguous(),
        norm.contiguous(), decay.contiguous(), probs, rows, width, events.shape[1],
        ROWS=block_rows, TROUGHS=troughs, num_warps=NUM_WARPS)
    return probs
