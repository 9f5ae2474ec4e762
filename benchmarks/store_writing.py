"""Writing features: the store's writer (whole shards, from a background thread) against one
.npy file per utterance and feature (the NeMo and FastPitch layout), same frames, same disk.

    python benchmarks/store_writing.py [--utterances 2000] [--speakers N] [--dir DIR]

2000 utterances of 600-1000 frames is about the 5.3 hours of audio that benchmarks/gpu_check.py
extracts on a GPU in 6 s, so it shows whether writing can keep up there. --speakers N names N
speakers, in turn (the writer then also takes per-speaker statistics).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from extract.store.index import UtteranceIndex
from extract.store.writer import StoreWriter

N_MELS = 80


def features_of(counts: np.ndarray, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"mel": rng.standard_normal((n, N_MELS), dtype=np.float32),
             "f0": rng.uniform(80, 300, n).astype(np.float32), "voiced": rng.random(n) < 0.6,
             "voiced_prob": rng.random(n, dtype=np.float32),
             "energy": rng.random(n, dtype=np.float32)} for n in counts]


def write_store(folder: Path, counts: np.ndarray, features: list[dict], speakers: int) -> float:
    ids = [f"utt{i}" for i in range(len(counts))]
    fields = {"id": ids, "text": ids, "audio": [f"{i}.wav" for i in ids]}
    if speakers:
        fields["speaker"] = [f"speaker{i % speakers}" for i in range(len(counts))]
    index = UtteranceIndex(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                           np.zeros((len(counts), 2), dtype=np.int64), fields)
    out = folder / "features.zarr"
    out.mkdir()
    start = time.perf_counter()
    writer = StoreWriter(out, index, {"n_mels": N_MELS},
                         {"config": {}, "manifest_sha256": "", "versions": {}})
    for i, utterance in enumerate(features):
        writer.add(i, utterance)
    writer.finish({})
    return time.perf_counter() - start


def write_npy_files(folder: Path, features: list[dict]) -> float:
    start = time.perf_counter()
    for name in features[0]:
        (folder / name).mkdir()
    for i, utterance in enumerate(features):
        for name, values in utterance.items():
            np.save(folder / name / f"utt{i}.npy", values)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=2000)
    parser.add_argument("--speakers", type=int, default=0, help="speakers named in turn")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    counts = np.random.default_rng(1).integers(600, 1000, args.utterances)
    features = features_of(counts)
    frames = int(counts.sum())
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="store-writing-") as tmp:
        (Path(tmp) / "npy").mkdir()
        npy_s = write_npy_files(Path(tmp) / "npy", features)
        store_s = write_store(Path(tmp), counts, features, args.speakers)
    print(f"{args.utterances} utterances, {frames} frames "
          f"({frames * 256 / 22050 / 3600:.1f} h at hop 256, 22.05 kHz), "
          f"{args.speakers or 'no'} speakers")
    print(f"store writer: {store_s:.2f} s = {frames / store_s:,.0f} frames/s")
    print(f"one .npy per utterance and feature: {npy_s:.2f} s = {frames / npy_s:,.0f} frames/s")
    print(f"ratio (store / npy): {npy_s / store_s:.1f}x")


if __name__ == "__main__":
    main()
