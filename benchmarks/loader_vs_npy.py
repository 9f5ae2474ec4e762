"""Random access to whole utterances (mel, f0, voiced, voiced_prob, energy, text): FeatureStore
in its default and in-memory modes against one .npy file per utterance and feature (the NeMo and
FastPitch layout) and against naive zarr-python slicing, on the same data.

    python benchmarks/loader_vs_npy.py [--store OUT.zarr] [--reads 2000]

Without --store it extracts the demo corpus first (CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from extract.loader import FeatureStore

NAMES = ("mel", "f0", "voiced", "voiced_prob", "energy")


def rate(read, order) -> float:
    for i in order[:50]:
        read(i)
    start = time.perf_counter()
    for i in order:
        read(i)
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        work = Path(tmp)
        path = args.store
        if path is None:
            from extract.demo import write_demo_corpus
            from extract.job import run_job
            path = run_job(write_demo_corpus(work / "demo"), work / "demo.zarr", device="cpu",
                           show_progress=False).path

        store = FeatureStore(path)
        npy = work / "npy"
        npy.mkdir(exist_ok=True)
        for i in range(len(store)):
            item = store[i]
            for name in NAMES:
                np.save(npy / f"{item['id']}.{name}.npy", item[name].numpy())
            (npy / f"{item['id']}.txt").write_text(item["text"])
        ids = store.ids
        order = np.random.default_rng(0).integers(0, len(store), args.reads).tolist()

        def read_npy(i):
            for name in NAMES:
                np.load(npy / f"{ids[i]}.{name}.npy")
            (npy / f"{ids[i]}.txt").read_text()

        group = zarr.open_group(str(path), mode="r")
        arrays = {name: group[name] for name in NAMES}

        def read_naive(i):
            a, b = store.offsets[i], store.offsets[i + 1]
            for name in NAMES:
                arrays[name][a:b]

        in_memory = FeatureStore(path, in_memory=True)
        baseline = rate(read_npy, order)
        results = {"one .npy per utterance and feature (baseline)": baseline,
                   "FeatureStore default": rate(store.__getitem__, order),
                   "FeatureStore in_memory=True": rate(in_memory.__getitem__, order),
                   "naive zarr-python slicing":
                       rate(read_naive, order[: max(200, len(order) // 10)])}
        print(f"{len(store)} utterances, mean {store.lengths.mean():.0f} frames; {len(order)} "
              "random whole-utterance reads (page cache warm)")
        for label, value in results.items():
            print(f"  {label:48s} {value:9.0f} utt/s  {value / baseline:6.2f}x baseline")


if __name__ == "__main__":
    main()
