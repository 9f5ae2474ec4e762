"""Bytes that pyin's per-frame work (extract.features.pyin.observations) reads and writes, per
frame and per source line: a model of its GPU time that runs on the CPU.

    python benchmarks/pyin_traffic.py [--utterances 200] [--lines 25]

On an H200 that work is bound by memory traffic (2026-11-27: 345,000 frames in 39 ms). The
script runs it on the CPU with the GPU's block size (ROWS_PER_CHUNK["cuda"]) on 4 s speech-like
clips, and adds up each aten op's tensor bytes: inputs plus outputs, where a view or an
allocation moves nothing, a fill writes its tensor, an in-place op reads and writes it, a copy
reads its source and writes its destination, and an indexed write reads indices and values and
writes the values. A tensor counts its distinct elements (a broadcast dimension once); a
strided one, whose closest elements lie apart, counts a 32-byte memory sector per element up to
the stride (a GPU reads whole sectors). What happens inside a library call (cuFFT's copy of its
input to irfft) is not seen. The trough sums count as the Triton kernel's reads and writes.
"""

from __future__ import annotations

import argparse
import collections
import functools
import math
import traceback

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import extract.features.pyin as pyin_module
import extract.kernels.trough_weights as trough_weights_module
from extract.config import C2_HZ, C7_HZ
from extract.demo import synth_utterance

RATE, FMIN, FMAX = 22050, C2_HZ, C7_HZ
SECTOR = 32
NO_TRAFFIC = {"alias", "as_strided", "detach", "diagonal", "empty", "empty_like", "expand",
              "lift_fresh", "narrow", "permute", "select", "slice", "split", "squeeze", "t",
              "transpose", "unbind", "unfold", "unsqueeze", "view", "view_as_complex",
              "view_as_real", "_reshape_alias", "_unsafe_view"}


def tensor_bytes(values) -> int:
    """Bytes an op touches in the tensors among `values`, by the rules above."""
    total = 0
    for v in tree_flatten(values)[0]:
        if not isinstance(v, torch.Tensor) or v.numel() == 0:
            continue
        dims = [(size, stride) for size, stride in zip(v.shape, v.stride()) if size > 1 and stride]
        gap = min((stride for _, stride in dims), default=1) * v.element_size()
        per_element = v.element_size() if gap == v.element_size() else min(gap, SECTOR)
        total += math.prod(size for size, _ in dims) * per_element
    return total


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
        if name in ("fill_", "zero_"):
            moved = tensor_bytes(args[0])
        elif name == "copy_":
            moved = tensor_bytes(args[1]) + tensor_bytes(args[0])
        elif name in ("index_put_", "scatter_"):
            moved = tensor_bytes(args[1:]) + tensor_bytes(args[-1])
        elif name.endswith("_"):
            moved = tensor_bytes((args, kwargs)) + tensor_bytes(args[0])
        else:
            moved = tensor_bytes((args, kwargs)) + tensor_bytes(out)
        self.bytes_by_line[caller_line()] += moved
        return out


def caller_line() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/extract/" in frame.filename:
            return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.line}"
    return "?"


def count_traffic(frames: torch.Tensor) -> collections.Counter[str]:
    """Bytes by source line of observations(frames) on the CPU, in the GPU's blocks and with
    the trough sums counted as their Triton kernel's inputs read and [R, M] float64 written.
    Restores the module state it changes."""
    counter = TrafficCounter()

    def trough_weights(first_below, events, n_events, mass, norm, decay):
        probs = torch.empty(first_below.shape, dtype=torch.float64)
        moved = tensor_bytes((first_below, events, n_events, mass, probs))
        counter.bytes_by_line["kernels/trough_weights.py (the Triton kernel)"] += moved
        return probs.zero_()

    saved = (trough_weights_module.trough_weights_triton, pyin_module.trough_probabilities,
             pyin_module.ROWS_PER_CHUNK["cpu"])
    trough_weights_module.trough_weights_triton = trough_weights
    pyin_module.trough_probabilities = functools.partial(saved[1], kernel=True)
    pyin_module.ROWS_PER_CHUNK["cpu"] = pyin_module.ROWS_PER_CHUNK["cuda"]
    try:
        with counter:
            pyin_module.observations(frames.cpu(), RATE, FMIN, FMAX, 0.01)
    finally:
        (trough_weights_module.trough_weights_triton, pyin_module.trough_probabilities,
         pyin_module.ROWS_PER_CHUNK["cpu"]) = saved
    return counter.bytes_by_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--lines", type=int, default=25)
    args = parser.parse_args()
    clips = [synth_utterance(4.0, RATE, np.random.default_rng(k)) for k in range(16)]
    audio = torch.from_numpy(np.stack(clips * (args.utterances // 16 + 1))[:args.utterances])
    frames = torch.nn.functional.pad(audio.float(), (512, 512)).unfold(1, 1024, 256)
    bytes_by_line = count_traffic(frames)
    n_frames = frames.shape[0] * frames.shape[1]
    total = sum(bytes_by_line.values())
    print(f"{n_frames} frames: {total / n_frames / 1e3:.1f} KB a frame")
    for line, moved in bytes_by_line.most_common(args.lines):
        print(f"{moved / n_frames / 1e3:7.1f} KB  {line}")


if __name__ == "__main__":
    main()
