"""The extraction job: corpus -> DALI decode -> resample -> features -> Zarr store.

One code path for every device; `device` only decides where tensors live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import metadata as pkg_metadata
from pathlib import Path

import numpy as np
import torch

from extract.config import Preset, load_preset
from extract.decode.dali import decode_batches
from extract.decode.resample import resample_batch, resampled_length
from extract.features import extract_features
from extract.features.stats import FeatureStats
from extract.input.corpus import Corpus, CorpusError, Utterance, load_corpus
from extract.progress import Progress
from extract.store.layout import SHARD_FRAMES
from extract.store.writer import StoreWriter, prepare_output

WINDOW_FRAMES = 32 * SHARD_FRAMES   # utterances are length-sorted within windows this long
DEFAULT_BATCH_SIZE = {"cuda": 256, "cpu": 32}


@dataclass
class JobResult:
    path: Path
    utterances: int
    audio_s: float
    elapsed_s: float
    device: str

    @property
    def times_real_time(self) -> float:
        return self.audio_s / self.elapsed_s


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without CUDA is an error."""
    if name not in ("auto", "cuda", "cpu"):
        raise ValueError(f"--device must be auto, cuda or cpu, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; "
                           "use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else \
        torch.device("cpu")


def frame_counts(corpus: Corpus, preset: Preset) -> np.ndarray:
    """Frames per utterance, from headers; raises for audio too short to frame."""
    min_samples = (preset.n_fft - preset.hop_length) // 2 + 1
    counts, short = [], []
    for u in corpus.utterances:
        n = resampled_length(u.wav.num_samples, u.wav.sample_rate, preset.sample_rate)
        if n < max(min_samples, preset.hop_length):
            short.append(f"{u.path} (metadata line {u.line_number}): {n} samples at "
                         f"{preset.sample_rate} Hz, need at least "
                         f"{max(min_samples, preset.hop_length)}")
        counts.append(preset.num_frames(n))
    if short:
        raise CorpusError("audio too short to frame:\n  " + "\n  ".join(short[:20]))
    return np.asarray(counts, dtype=np.int64)


def processing_order(utterances: list[Utterance], counts: np.ndarray) -> list[Utterance]:
    """Store order cut into windows of about WINDOW_FRAMES frames, each sorted by (rate,
    length): batches pad little, and shards complete (and leave memory) window by window."""
    order, window, frames = [], [], 0
    for u, n in zip(utterances, counts):
        window.append(u)
        frames += n
        if frames >= WINDOW_FRAMES or u is utterances[-1]:
            order += sorted(window, key=lambda v: (v.wav.sample_rate, v.wav.num_samples))
            window, frames = [], 0
    return order


def to_preset_rate(audio: torch.Tensor, lengths: torch.Tensor, rates: list[int],
                   target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample each row from its own rate to `target`; rows keep their order."""
    if all(r == target for r in rates):
        return audio, lengths
    parts = []
    for rate in sorted(set(rates)):
        rows = torch.tensor([i for i, r in enumerate(rates) if r == rate], device=audio.device)
        sub_lengths = lengths[rows]
        sub = audio[rows, : int(sub_lengths.max())]
        parts.append((rows, *resample_batch(sub, sub_lengths, rate, target)))
    width = max(p[1].shape[1] for p in parts)
    out = torch.zeros(len(rates), width, dtype=audio.dtype, device=audio.device)
    out_lengths = torch.empty_like(lengths)
    for rows, resampled, new_lengths in parts:
        out[rows, : resampled.shape[1]] = resampled
        out_lengths[rows] = new_lengths
    return out, out_lengths


def check_decoded_lengths(utterances: list[Utterance], lengths: list[int]) -> None:
    for u, n in zip(utterances, lengths):
        if n != u.wav.num_samples:
            raise CorpusError(f"{u.path} (metadata line {u.line_number}): decoded {n} samples "
                              f"but its header says {u.wav.num_samples}; re-encode the file")


def dependency_versions() -> dict[str, str]:
    versions = {}
    for name in ("tts-extract", "torch", "torchaudio", "nvidia-dali-cuda130", "numpy", "zarr"):
        try:
            versions[name] = pkg_metadata.version(name)
        except pkg_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_job(dataset: str | Path, out: str | Path, preset: str = "hifigan", device: str = "auto",
            batch_size: int | None = None, limit: int | None = None, overwrite: bool = False,
            show_progress: bool = True) -> JobResult:
    """Extract every utterance of `dataset` into the store `out`; see the README."""
    started = time.perf_counter()
    preset_obj = load_preset(preset)
    torch_device = resolve_device(device)
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE[torch_device.type]
    if batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    corpus = load_corpus(dataset, limit)
    counts = frame_counts(corpus, preset_obj)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    out = Path(out)
    prepare_output(out, overwrite)
    utts = corpus.utterances
    writer = StoreWriter(out, offsets, preset_obj.n_mels, [u.id for u in utts],
                         [u.text for u in utts],
                         {"config": preset_obj.to_dict(), "manifest_sha256":
                          corpus.manifest_sha256(), "versions": dependency_versions()})
    stats = FeatureStats(preset_obj.n_mels, torch_device)
    progress = Progress(len(utts), corpus.duration_s, enabled=show_progress)
    order = processing_order(utts, counts)
    with torch.inference_mode():
        for batch in decode_batches([u.path for u in order], [u.index for u in order],
                                    batch_size, torch_device):
            batch_utts = [utts[i] for i in batch.indices]
            check_decoded_lengths(batch_utts, batch.lengths.tolist())
            audio, lengths = to_preset_rate(batch.audio, batch.lengths,
                                            [u.wav.sample_rate for u in batch_utts],
                                            preset_obj.sample_rate)
            features = extract_features(audio, lengths, preset_obj)
            n_frames = torch.as_tensor(counts[batch.indices], device=torch_device)
            valid = torch.arange(features["mel"].shape[1], device=torch_device)[None] < \
                n_frames[:, None]
            flat = {name: value[valid] for name, value in features.items()}
            stats.add(flat["mel"], flat["f0"], flat["voiced"], flat["energy"])
            host = {name: value.cpu().numpy() for name, value in flat.items()}
            edges = np.concatenate([[0], np.cumsum(counts[batch.indices])])
            for k, index in enumerate(batch.indices):
                writer.add(index, {name: v[edges[k]:edges[k + 1]] for name, v in host.items()})
            progress.update(len(batch_utts), sum(u.duration_s for u in batch_utts))
    elapsed = time.perf_counter() - started
    writer.finish({"stats": stats.result(), "run": {"device": str(torch_device),
                                             "elapsed_s": round(elapsed, 3),
                                             "audio_s": round(corpus.duration_s, 3)}})
    progress.close()
    return JobResult(out, len(utts), corpus.duration_s, time.perf_counter() - started,
                     str(torch_device))
