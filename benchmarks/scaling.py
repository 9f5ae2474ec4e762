"""Scaling with torchrun: the same corpus with 1 process and with N ranks on this machine,
times real time and the ratio; the stores must be identical.

    python benchmarks/scaling.py [--ranks 2] [--copies 2] [--device auto]

The corpus is the demo corpus repeated --copies times. On the CPU the ranks share the cores
(each gets cores / ranks threads), so the ratio shows the overhead and the gain from running
decode and features in separate processes; on a multi-GPU node each rank has its own GPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from gpu_check import repeated_corpus  # noqa: E402


def timed_run(launcher: list[str], corpus: Path, out: Path, device: str) -> float:
    start = time.perf_counter()
    subprocess.run([*launcher, "-m", "extract", "run", str(corpus), str(out), "--device", device,
                    "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    from extract.demo import write_demo_corpus
    from extract.loader import FeatureStore
    from extract.store.layout import FRAME_ARRAYS

    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        work = Path(tmp)
        corpus = repeated_corpus(write_demo_corpus(work / "demo"), work / "corpus", args.copies)
        single = timed_run([sys.executable], corpus, work / "one.zarr", args.device)
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={args.ranks}", f"--log-dir={work / 'torchrun'}"]
        multi = timed_run(launcher, corpus, work / "many.zarr", args.device)
        audio_s = FeatureStore(work / "one.zarr").attrs["run"]["audio_s"]
        a, b = zarr.open_group(str(work / "one.zarr")), zarr.open_group(str(work / "many.zarr"))
        same = all(np.array_equal(a[n][:], b[n][:]) for n in FRAME_ARRAYS)
        print(f"{audio_s:.0f} s of audio, whole commands including start-up")
        print(f"1 process:  {single:.1f} s = {audio_s / single:.0f}x real time")
        print(f"{args.ranks} ranks:    {multi:.1f} s = {audio_s / multi:.0f}x real time "
              f"({audio_s / multi / args.ranks:.0f}x per rank)")
        print(f"speed-up: {single / multi:.2f}x; stores identical: {same}")


if __name__ == "__main__":
    main()
