"""The dio pitch method (the espnet preset) against what ESPnet calls, pyworld.dio then
pyworld.stonemask at 80-400 Hz, on the same clips and machine: speed and agreement.

    python benchmarks/dio_vs_pyworld.py [--clips 60] [--device auto] [--workers N]

pyworld runs one single-threaded process per worker; ours uses torch's threads on the CPU or the
GPU, and its time is the median of three runs. Clips are those of pitch_vs_librosa.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from job_vs_librosa import run_in_processes  # noqa: E402
from pitch_vs_librosa import (HOP, SR, batched_by_length, clip_benchmark_args,  # noqa: E402
                              make_clips, timed)

FLOOR, CEIL = 80.0, 400.0
FRAME_PERIOD = 1000 * HOP / SR


def pyworld_dio(y: np.ndarray) -> np.ndarray:
    import pyworld

    x = y.astype(np.float64)
    f0, positions = pyworld.dio(x, SR, f0_floor=FLOOR, f0_ceil=CEIL, frame_period=FRAME_PERIOD)
    return pyworld.stonemask(x, f0, positions, SR)


def ours(clips, device: torch.device, batch_size: int) -> tuple[list[np.ndarray], float]:
    """Our dio on the same frames, batched by length; results in clip order."""
    from extract.features.world import dio_stonemask

    def run(batch):
        audio = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(clips[i]) for i in batch],
                                                batch_first=True).to(device)
        lengths = torch.tensor([len(clips[i]) for i in batch])
        f0 = dio_stonemask(audio, lengths, SR, HOP, 1 + int(lengths.max()) // HOP, FLOOR,
                           CEIL).cpu().numpy()
        return [f0[row, : 1 + len(clips[i]) // HOP] for row, i in enumerate(batch)]

    return batched_by_length([len(c) for c in clips], batch_size, device, run)


def main() -> None:
    args, device = clip_benchmark_args(__doc__.split("\n")[0])
    clips = [c[0] for c in make_clips(args.clips)]
    audio_s = sum(len(c) for c in clips) / SR
    our_results, our_s = timed(ours, clips, device, args.batch_size)
    reference, world_s = run_in_processes(pyworld_dio, clips, args.workers)
    print(f"{len(clips)} clips, {audio_s:.0f} s of audio at {SR} Hz")
    print(f"pyworld dio + stonemask, {args.workers} single-threaded processes: {world_s:.1f} s = "
          f"{audio_s / world_s:.0f}x real time")
    print(f"tts-extract dio on {device} ({torch.get_num_threads()} threads): {our_s:.2f} s = "
          f"{audio_s / our_s:.0f}x real time")
    print(f"ratio (ours / pyworld): {world_s / our_s:.1f}x")
    ours_f0 = np.concatenate(our_results)
    expected = np.concatenate([np.pad(r, (0, max(0, len(o) - len(r))))[:len(o)]
                               for r, o in zip(reference, our_results)])
    voiced = expected > 0
    print(f"same voicing: {((ours_f0 > 0) == voiced).mean():.4%} of {len(ours_f0)} frames; "
          f"largest f0 difference {np.abs(ours_f0 - expected)[voiced].max():.2e} Hz")


if __name__ == "__main__":
    main()
