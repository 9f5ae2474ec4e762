"""Times real time of the extraction job against librosa mel + librosa.pyin at FastPitch's
settings (what NeMo's extract_sup_data.py and FastPitch's prepare_dataset.py do), on the same
corpus and machine, librosa with one single-threaded process per core.

    python benchmarks/job_vs_librosa.py [--corpus DIR] [--device auto] [--librosa-files N]
                                        [--repeats 3]

Without --corpus it writes the demo corpus to a temporary folder. librosa runs on the first
--librosa-files utterances (all by default) and its rate is compared with the job's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

SINGLE_THREADED = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS")}


def librosa_features(path: str) -> float:
    """FastPitch prepare_dataset.py: mel (HiFi-GAN-style Slaney basis) and pyin C2-C7."""
    import librosa
    import numpy as np

    y, sr = librosa.load(path, sr=22050)
    mag = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, center=True))
    mel = librosa.filters.mel(sr=sr, n_fft=1024, n_mels=80, fmin=0, fmax=8000) @ mag
    np.log(np.clip(mel, 1e-5, None))
    librosa.pyin(y, fmin=librosa.note_to_hz("C2"), fmax=librosa.note_to_hz("C7"), sr=sr,
                 frame_length=1024, hop_length=256, center=True)
    return len(y) / sr


def run_in_processes(function, items: list, workers: int) -> tuple[list, float]:
    """`function` over `items` in single-threaded worker processes: (results, seconds).

    Workers come from a fork server started with one thread each for OpenMP, OpenBLAS and MKL. A
    worker forked from this process keeps the thread pools it already started: 16 of them (16
    threads each) ran librosa at 100-107x real time on a 16-core machine, and spawned ones at
    150-152x. Spawned workers were slower than the fork server's on 2 cores (librosa 4.4x
    against 4.9-5.0x, pyworld 2.0-2.4 s against 1.2-1.4 s). Each worker warms up (imports, numba)
    before the timing starts; the first warm-up runs here alone, since processes that fill
    librosa's numba cache at the same time crashed on a fresh install."""
    function(items[0])
    with (mock.patch.dict(os.environ, SINGLE_THREADED),
          ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                              initializer=function, initargs=(items[0],)) as pool):
        list(pool.map(function, items[:workers]))     # starts the workers, each warmed up
        start = time.perf_counter()
        results = list(pool.map(function, items))
    return results, time.perf_counter() - start


def time_job(command: list[str], out: Path) -> dict:
    """One run of the job's command: its summary, audio and device, the job's own seconds (as
    the store records them) and the whole command's."""
    from extract.loader import FeatureStore

    start = time.perf_counter()
    summary = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    wall_s = time.perf_counter() - start
    run = FeatureStore(out).attrs["run"]
    return {"summary": summary.strip(), "audio_s": run["audio_s"], "device": run["device"],
            "elapsed_s": run["elapsed_s"], "wall_s": wall_s}


def time_librosa(paths: list[str], workers: int) -> tuple[float, float]:
    """(seconds of audio, seconds taken) for librosa mel + pyin over `paths`."""
    durations, seconds = run_in_processes(librosa_features, paths, workers)
    return sum(durations), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--librosa-files", type=int)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the job (seconds each; one stall of a shared machine "
                             "would skew one): the median counts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        corpus = args.corpus
        if corpus is None:
            from extract.demo import write_demo_corpus
            corpus = write_demo_corpus(work / "demo")

        command = [sys.executable, "-m", "extract", "run", str(corpus), str(work / "out.zarr"),
                   "--device", args.device, "--overwrite", "--quiet"]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        runs = [time_job(command, work / "out.zarr") for _ in range(args.repeats)]
        print(runs[-1]["summary"])
        audio_s, device = runs[-1]["audio_s"], runs[-1]["device"]
        job_s = statistics.median(r["elapsed_s"] for r in runs)
        job_wall = statistics.median(r["wall_s"] for r in runs)

        from extract.input.corpus import load_corpus
        paths = [str(u.path) for u in load_corpus(corpus).utterances][: args.librosa_files]
        lib_audio, lib_wall = time_librosa(paths, args.workers)
        lib_rate = lib_audio / lib_wall
        print(f"librosa mel + pyin, {args.workers} processes: {lib_audio:.0f} s audio in "
              f"{lib_wall:.1f} s = {lib_rate:.1f}x real time")
        spread = ", ".join(f"{audio_s / r['elapsed_s']:.0f}x" for r in runs)
        print(f"tts-extract on {device}: {audio_s:.0f} s audio, median of {len(runs)} runs: "
              f"job {job_s:.1f} s = {audio_s / job_s:.0f}x real time ({spread}); "
              f"whole command incl. start-up {job_wall:.1f} s = {audio_s / job_wall:.0f}x")
        print(f"ratio (job / librosa): {audio_s / job_s / lib_rate:.1f}x; "
              f"whole command: {audio_s / job_wall / lib_rate:.1f}x")


if __name__ == "__main__":
    main()
