"""Peak memory of the job on long files: the same audio as 10-second files, as 5-minute files
in batches bounded by their length (what the job does), and as 5-minute files in whole
batches of --batch-size (what it did before batches were bounded), each a fresh process.

    python benchmarks/long_files_memory.py [--files 8] [--seconds 300] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from extract.demo import synth_utterance
from extract.input.audio import write_wav

RATE = 22050
SHORT_S = 10
UNBOUNDED = ("import sys, extract.plan, extract.cli; extract.plan.LONG_UTTERANCE_S = "
             "float('inf'); sys.exit(extract.cli.main(sys.argv[1:]))")


def write_corpora(work: Path, files: int, seconds: float) -> tuple[Path, Path]:
    """(folder of `files` long files, folder of the same audio cut into SHORT_S pieces)."""
    long, short = work / "long", work / "short"
    lines = {long: [], short: []}
    for folder in lines:
        (folder / "wavs").mkdir(parents=True)
    for k in range(files):
        y = synth_utterance(seconds, RATE, np.random.default_rng(k))
        write_wav(long / "wavs" / f"long{k}.wav", y, RATE)
        lines[long].append(f"long{k}|Long file {k}.|")
        for p, start in enumerate(range(0, len(y), SHORT_S * RATE)):
            write_wav(short / "wavs" / f"short{k}_{p}.wav", y[start:start + SHORT_S * RATE], RATE)
            lines[short].append(f"short{k}_{p}|Piece {p} of file {k}.|")
    for folder, rows in lines.items():
        (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return long, short


def peak_rss_gb(command: list[str]) -> tuple[float, float]:
    """Run `command`: (the peak resident set of its process in GB, seconds taken)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return usage.ru_maxrss / 1e6, time.perf_counter() - start   # ru_maxrss: KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        long, short = write_corpora(work, args.files, args.seconds)
        options = [str(work / "out.zarr"), "--device", args.device, "--overwrite", "--quiet"]
        runs = {
            f"{SHORT_S:g} s files": [sys.executable, "-m", "extract", "run", str(short)],
            f"{args.seconds:g} s files": [sys.executable, "-m", "extract", "run", str(long)],
            f"{args.seconds:g} s files, unbounded batches": [sys.executable, "-c", UNBOUNDED,
                                                              "run", str(long)],
        }
        peaks = {name: peak_rss_gb(command + options) for name, command in runs.items()}
    audio_min = args.files * args.seconds / 60
    print(f"peak resident memory of the job on {args.device}, {audio_min:.0f} min of audio:")
    for name, (gb, seconds) in peaks.items():
        print(f"  {name}: {gb:.2f} GB ({seconds:.0f} s, start-up included)")
    short_gb, bounded_gb, unbounded_gb = (gb for gb, _ in peaks.values())
    print(f"ratio ({args.seconds:g} s files / {SHORT_S:g} s files): {bounded_gb / short_gb:.2f}x; "
          f"unbounded batches / bounded: {unbounded_gb / bounded_gb:.2f}x")


if __name__ == "__main__":
    main()
