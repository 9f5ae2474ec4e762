"""Read and decode WAVs with a DALI pipeline, handing padded float batches to torch.

Reading and decoding run on DALI's CPU thread pool; on a GPU the padded batch is uploaded by
DALI (`.gpu()`) and handed over zero-copy through DLPack. Audio keeps its own sample rate here;
resampling happens in torch (`extract.decode.resample`), because DALI's resampler aliases.

When the decoder fails on a file, DALI fails the whole batch without naming the file and the
pipeline is unusable. We then decode the files of the batches in flight one at a time to find
the culprits, report them in `AudioBatch.failed`, and go on with a new pipeline. A failed
allocation is no file's fault: it raises `DecoderOutOfMemory` instead.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

PREFETCH = 2
# What DALI's errors say when an allocation fails, and where: on the host, std::bad_alloc (seen
# here under a memory limit) or "Can't allocate N bytes on host."; on the GPU, "CUDA allocation
# failed" or "Can't allocate N bytes on device D." (strings in libdali).
OUT_OF_MEMORY = {"std::bad_alloc": "host", "bytes on host": "host",
                 "CUDA allocation failed": "GPU", "bytes on device": "GPU"}
# DALI's words when a file holds fewer samples than its header gives (a FLAC cut short)
SHORT_DECODE = re.compile(r"Requested (\d+) samples but got (\d+) samples")


class DecoderOutOfMemory(MemoryError):
    """DALI could not allocate memory for a batch; `memory` is "host" or "GPU"."""

    def __init__(self, memory: str, reason: str):
        super().__init__(f"DALI ran out of {memory} memory decoding a batch ({reason})")
        self.memory = memory


@dataclass
class AudioBatch:
    indices: list[int]          # utterance indices, in batch order
    audio: torch.Tensor         # [B, L] float32 in [-1, 1], zero past each length, on `device`
    lengths: torch.Tensor       # [B] int64 samples, on `device`
    failed: list[tuple[int, str]] = field(default_factory=list)   # (index, decoder error)


def decode_batches(paths: Sequence[Path], indices: Sequence[int], sizes: Sequence[int],
                   device: torch.device, threads: int) -> Iterator[AudioBatch]:
    """Decode `paths` in the given order (mono, native rate) in consecutive batches of `sizes`
    files (they sum to len(paths)), on `threads` CPU threads. Each run of equal sizes gets its
    own pipeline."""
    if sum(sizes) != len(paths):
        raise ValueError(f"batch sizes add up to {sum(sizes)}, not to {len(paths)} files")
    start = 0
    for size, files in _runs(sizes):
        end = start + files
        while start < end:
            pipe = _pipeline(paths[start:end], indices[start:end], size, device, threads,
                             PREFETCH)
            while start < end:
                try:
                    outputs = pipe.run()
                except RuntimeError as e:
                    _raise_if_out_of_memory(e)
                    # the failing batch may be any of those in flight
                    stop = min(end, start + size * PREFETCH)
                    yield _isolate(paths[start:stop], indices[start:stop], device, threads)
                    start = stop
                    break
                yield _to_batch(outputs, device)
                start += size


def _raise_if_out_of_memory(error: RuntimeError) -> None:
    for marker, memory in OUT_OF_MEMORY.items():
        if marker in str(error):
            raise DecoderOutOfMemory(memory, marker) from error


def _runs(sizes: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(size, files) for each run of equal consecutive batch sizes."""
    for size, run in itertools.groupby(sizes):
        yield size, size * len(list(run))


def _pipeline(paths, indices, batch_size: int, device: torch.device, threads: int,
              prefetch: int):
    from nvidia.dali import fn, pipeline_def, types

    use_gpu = device.type == "cuda"

    @pipeline_def(batch_size=batch_size, num_threads=threads,
                  device_id=(device.index or 0) if use_gpu else None,
                  prefetch_queue_depth=prefetch)
    def pipeline():
        encoded, label = fn.readers.file(files=[str(p) for p in paths], labels=list(indices),
                                         pad_last_batch=True, random_shuffle=False, name="reader")
        audio, _ = fn.decoders.audio(encoded, downmix=True, dtype=types.FLOAT)
        length = audio.shape()
        audio = fn.pad(audio, axes=(0,), fill_value=0.0)
        return (audio.gpu() if use_gpu else audio), length, label

    pipe = pipeline()
    pipe.build()
    return pipe


def _decoder_words(error: RuntimeError) -> str:
    """The decoder's own message in a DALI pipeline error: the line after "encountered:" (the
    lines before it are DALI's frame around it), else the first line; a short read in ours."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "encountered:" in lines[:-1]:
        words = lines[lines.index("encountered:") + 1]
    else:
        words = lines[0] if lines else type(error).__name__
    short = SHORT_DECODE.search(words)
    if short:
        return (f"it decoded {short[2]} of the {short[1]} samples its header gives: the file is "
                "cut short or corrupt")
    return words[:200]


def _to_batch(outputs, device: torch.device) -> AudioBatch:
    audio, length, label = outputs
    lengths = torch.from_dlpack(length.as_tensor()).reshape(-1).to(torch.int64)
    labels = torch.from_dlpack(label.as_tensor()).reshape(-1).tolist()
    samples = torch.from_dlpack(audio.as_tensor())
    # DALI reuses its output buffers on the next run(): copy before handing over.
    return AudioBatch(labels, samples.to(device, copy=True), lengths.to(device))


def _isolate(paths, indices, device: torch.device, threads: int) -> AudioBatch:
    """Decode one file at a time; a failure rebuilds the pipeline after the culprit."""
    good, failed, position = [], [], 0
    while position < len(paths):
        pipe = _pipeline(paths[position:], indices[position:], 1, device, threads, 1)
        while position < len(paths):
            try:
                good.append(_to_batch(pipe.run(), device))
            except RuntimeError as e:
                _raise_if_out_of_memory(e)
                failed.append((indices[position], f"{paths[position]}: the audio decoder "
                                                  f"failed on this file ({_decoder_words(e)})"))
                position += 1
                break
            position += 1
    if not good:
        empty = torch.zeros(0, 0, device=device)
        return AudioBatch([], empty, torch.zeros(0, dtype=torch.int64, device=device), failed)
    width = max(int(b.lengths[0]) for b in good)
    audio = torch.stack([torch.nn.functional.pad(b.audio[0], (0, width - b.audio.shape[1]))
                         for b in good])
    return AudioBatch([b.indices[0] for b in good], audio, torch.cat([b.lengths for b in good]),
                      failed)
