"""Bytes that pyin's per-frame work (extract.features.pyin.observations) reads and writes, per
frame and per source line: a model of its GPU time that runs on the CPU.

    python benchmarks/pyin_traffic.py [--utterances 200] [--lines 25]

On an H200 that work is bound by memory traffic: 240 KB a frame took 39 ms for 345,000 frames
(2026-11-27), about 2.1 TB/s. The script runs the work on the CPU with the GPU's block size
(ROWS_PER_CHUNK["cuda"]) on 4 s speech-like clips, and adds up each aten op's tensor bytes:
inputs plus outputs; views and allocations count nothing, a fill or an in-place op its tensor
once, a copy its source twice, an indexed write its indices and values. Broadcast operands count
at their expanded size, and what happens inside a library call (cuFFT's copy of its input to
irfft) is not seen. The trough sums count as the Triton kernel's reads and writes, as on a GPU.
"""

from __future__ import annotations

import argparse
import collections
import functools
import traceback

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import extract.features.pyin as pyin_module
import extract.kernels.trough_weights as trough_weights_module
from extract.demo import synth_utterance

RATE, FMIN, FMAX = 22050, 65.406, 2093.0
NO_TRAFFIC = {"alias", "as_strided", "detach", "diagonal", "empty", "empty_like", "expand",
              "lift_fresh", "narrow", "permute", "select", "slice", "split", "squeeze", "t",
              "transpose", "unfold", "unsqueeze", "view", "view_as_complex", "view_as_real",
              "_reshape_alias", "_unsafe_view"}


def tensor_bytes(values) -> int:
    return sum(v.numel() * v.element_size() for v in tree_flatten(values)[0]
               if isinstance(v, torch.Tensor))


class TrafficCounter(TorchDispatchMode):
    """Bytes moved by each aten op, keyed by the line of extract/ that called it."""

    def __init__(self):
        super().__init__()
        self.bytes_by_line: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if name in NO_TRAFFIC:
            return out
        if name == "fill_":
            moved = tensor_bytes(args[0])
        elif name == "copy_":
            moved = 2 * tensor_bytes(args[1])
        elif name in ("index_put_", "scatter_"):
            moved = tensor_bytes(args[1:]) + tensor_bytes(args[-1])
        else:
            moved = tensor_bytes((args, kwargs)) + tensor_bytes(out)
            if name.endswith("_"):
                moved -= tensor_bytes(args[0])
        self.bytes_by_line[caller_line()] += moved
        return out


def caller_line() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/extract/" in frame.filename:
            return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.line}"
    return "?"


def count_trough_kernel(counter: TrafficCounter) -> None:
    """Route the trough sums to a stand-in for their Triton kernel that counts its traffic:
    its inputs read once, [R, M] float64 written."""
    def trough_weights(first_below, events, n_events, mass, norm, decay):
        probs = torch.empty(first_below.shape, dtype=torch.float64)
        moved = tensor_bytes((first_below, events, n_events, mass, probs))
        counter.bytes_by_line["kernels/trough_weights.py (the Triton kernel)"] += moved
        return probs.zero_()

    trough_weights_module.trough_weights_triton = trough_weights
    pyin_module.trough_probabilities = functools.partial(pyin_module.trough_probabilities,
                                                         kernel=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--lines", type=int, default=25)
    args = parser.parse_args()
    clips = [synth_utterance(4.0, RATE, np.random.default_rng(k)) for k in range(16)]
    audio = torch.from_numpy(np.stack(clips * (args.utterances // 16 + 1))[:args.utterances])
    frames = torch.nn.functional.pad(audio.float(), (512, 512)).unfold(1, 1024, 256)
    pyin_module.ROWS_PER_CHUNK["cpu"] = pyin_module.ROWS_PER_CHUNK["cuda"]
    counter = TrafficCounter()
    count_trough_kernel(counter)
    with counter:
        pyin_module.observations(frames, RATE, FMIN, FMAX, 0.01)
    n_frames = frames.shape[0] * frames.shape[1]
    total = sum(counter.bytes_by_line.values())
    print(f"{n_frames} frames: {total / n_frames / 1e3:.1f} KB a frame")
    for line, moved in counter.bytes_by_line.most_common(args.lines):
        print(f"{moved / n_frames / 1e3:7.1f} KB  {line}")


if __name__ == "__main__":
    main()
