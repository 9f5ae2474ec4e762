"""Read and decode WAVs with a DALI pipeline, handing padded float batches to torch.

Reading and decoding run on DALI's CPU thread pool; on a GPU the padded batch is uploaded by
DALI (`.gpu()`) and handed over zero-copy through DLPack. Audio keeps its own sample rate here;
resampling happens in torch (`extract.decode.resample`), because DALI's resampler aliases.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class AudioBatch:
    indices: list[int]          # utterance indices, in batch order
    audio: torch.Tensor         # [B, L] float32 in [-1, 1], zero past each length, on `device`
    lengths: torch.Tensor       # [B] int64 samples, on `device`


def decode_batches(paths: Sequence[Path], indices: Sequence[int], batch_size: int,
                   device: torch.device, num_threads: int | None = None) -> Iterator[AudioBatch]:
    """Decode `paths` in the given order (mono, native rate) in batches of `batch_size`."""
    from nvidia.dali import fn, pipeline_def, types

    use_gpu = device.type == "cuda"
    batch_size = max(1, min(batch_size, len(paths)))

    @pipeline_def(batch_size=batch_size, num_threads=num_threads or os.cpu_count() or 1,
                  device_id=(device.index or 0) if use_gpu else None, prefetch_queue_depth=2)
    def pipeline():
        encoded, label = fn.readers.file(files=[str(p) for p in paths], labels=list(indices),
                                         pad_last_batch=True, random_shuffle=False, name="reader")
        audio, _ = fn.decoders.audio(encoded, downmix=True, dtype=types.FLOAT)
        length = audio.shape()
        audio = fn.pad(audio, axes=(0,), fill_value=0.0)
        return (audio.gpu() if use_gpu else audio), length, label

    pipe = pipeline()
    pipe.build()
    remaining = len(paths)
    while remaining > 0:
        audio, length, label = pipe.run()
        take = min(batch_size, remaining)
        remaining -= take
        lengths = torch.from_dlpack(length.as_tensor()).reshape(-1)[:take].to(torch.int64)
        labels = torch.from_dlpack(label.as_tensor()).reshape(-1)[:take].tolist()
        samples = torch.from_dlpack(audio.as_tensor())[:take, : int(lengths.max())]
        # DALI reuses its output buffers on the next run(): copy before handing over.
        yield AudioBatch(labels, samples.to(device, copy=True), lengths.to(device))
