"""Pitch alone: our pyin against librosa.pyin (FastPitch/NeMo settings) on the same clips and
machine: speed, frame-for-frame parity, and accuracy against a known ground truth next to
pyworld's harvest and dio.

    python benchmarks/pitch_vs_librosa.py [--clips 60] [--device auto] [--workers N]

Clips are additive resyntheses on known F0 contours (extract.demo.synth_with_truth: harmonics
of the contour under moving formants, noise bursts, pauses; low, mid and high voices), so the
truth per frame is the contour at the frame centre, voiced where the harmonic part is present
(its weight at the frame centre is above 0).
Everything runs on pyin's own grid (frames centred at t * 256, 1 + len // 256 of them).
librosa runs one single-threaded process per worker; ours uses torch's threads on the CPU or
the GPU, and its time is the median of three runs. pyworld is optional (pip install pyworld);
without it those rows are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from job_vs_librosa import run_in_processes  # noqa: E402

from extract.config import C2_HZ, C7_HZ  # noqa: E402

SR, N, HOP = 22050, 1024, 256
FMIN, FMAX = C2_HZ, C7_HZ
VOICES = ((80, 140), (150, 260), (95, 230))


def make_clips(count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(audio float32, true f0 per frame, true voicing per frame) on pyin's grid."""
    from extract.demo import synth_with_truth

    clips = []
    for k in range(count):
        rng = np.random.default_rng(1000 + k)
        y, f0, voicing = synth_with_truth(rng.uniform(2.0, 6.0), SR, rng, VOICES[k % 3])
        centres = np.minimum(np.arange(1 + len(y) // HOP) * HOP, len(y) - 1)
        clips.append((y.astype(np.float32), f0[centres], voicing[centres] > 0))
    return clips


def librosa_pyin(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    f0, voiced, _ = librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=SR, frame_length=N,
                                 hop_length=HOP, center=True)
    return np.nan_to_num(f0), voiced


def batched_by_length(lengths: list[int], batch_size: int, device: torch.device,
                      run) -> tuple[list, float]:
    """run(indices) -> one result per index, over batches of similar length: (results in the
    original order, seconds)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    results = [None] * len(lengths)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        batch = order[first:first + batch_size]
        for i, result in zip(batch, run(batch)):
            results[i] = result
    return results, time.perf_counter() - start


def ours(clips, device: torch.device, batch_size: int):
    """Our pyin on librosa's grid, batched by length; returns results in clip order."""
    from extract.features.pyin import pyin

    def run(batch):
        frames = torch.nn.utils.rnn.pad_sequence(
            [torch.from_numpy(np.pad(clips[i][0], N // 2)).unfold(0, N, HOP) for i in batch],
            batch_first=True).to(device)
        counts = torch.tensor([1 + len(clips[i][0]) // HOP for i in batch], device=device)
        f0, voiced, _ = pyin(frames, counts, SR, HOP, FMIN, FMAX)
        f0, voiced = f0.cpu().numpy(), voiced.cpu().numpy()
        return [(f0[row, :int(counts[row])], voiced[row, :int(counts[row])])
                for row in range(len(batch))]

    return batched_by_length([len(c[0]) for c in clips], batch_size, device, run)


def world(clips, method: str):
    import pyworld

    results = []
    for y, truth_f0, _ in clips:
        x = y.astype(np.float64)
        f0, _ = getattr(pyworld, method)(x, SR, f0_floor=FMIN, f0_ceil=800.0,
                                         frame_period=1000 * HOP / SR)
        f0 = np.pad(f0, (0, max(0, len(truth_f0) - len(f0))))[:len(truth_f0)]
        results.append((f0, f0 > 0))
    return results


def accuracy(clips, results) -> dict[str, float]:
    """RPA (truly voiced frames estimated voiced within 50 cents), VDE (frames with the wrong
    voicing decision), GPE (frames voiced in both, off by more than 20 %)."""
    true_f0 = np.concatenate([c[1] for c in clips])
    true_voiced = np.concatenate([c[2] for c in clips])
    f0 = np.concatenate([r[0] for r in results])
    voiced = np.concatenate([r[1] for r in results])
    both = voiced & true_voiced
    cents = 1200 * np.abs(np.log2(np.where(both, f0, 1) / np.where(both, true_f0, 1)))
    return {"RPA": (both & (cents <= 50)).sum() / true_voiced.sum(),
            "VDE": (voiced != true_voiced).mean(),
            "GPE": (np.abs(f0[both] / true_f0[both] - 1) > 0.2).mean()}


def parity(ours_results, librosa_results) -> dict[str, float]:
    f0 = np.concatenate([r[0] for r in ours_results])
    voiced = np.concatenate([r[1] for r in ours_results])
    ref_f0 = np.concatenate([r[0] for r in librosa_results])
    ref_voiced = np.concatenate([r[1] for r in librosa_results])
    both = voiced & ref_voiced
    cents = 1200 * np.abs(np.log2(f0[both] / ref_f0[both]))
    identical = (voiced == ref_voiced) & (~voiced | (f0 == ref_f0.astype(np.float32)))
    return {"frames": len(f0), "same voicing": (voiced == ref_voiced).mean(),
            "within 10 cents (voiced in both)": (cents <= 10 + 1e-3).mean(),
            "identical f0 and voicing": identical.mean()}


def clip_benchmark_args(description: str) -> tuple[argparse.Namespace, torch.device]:
    """--clips, --device, --batch-size, --workers, and the device they name."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    from extract.job import resolve_device

    return args, resolve_device(args.device)


def timed(run, clips, device: torch.device, batch_size: int) -> tuple[list, float]:
    """run(clips, device, batch_size) -> (results, seconds): warmed up, then the median of 3
    runs, as ours takes seconds and one stall of a shared machine would skew it."""
    run(clips[:2], device, batch_size)
    timings = [run(clips, device, batch_size) for _ in range(3)]
    return timings[0][0], float(np.median([t for _, t in timings]))


def main() -> None:
    args, device = clip_benchmark_args(__doc__.split("\n")[0])
    clips = make_clips(args.clips)
    audio_s = sum(len(c[0]) for c in clips) / SR
    our_results, our_s = timed(ours, clips, device, args.batch_size)
    lib_results, lib_s = run_in_processes(librosa_pyin, [c[0] for c in clips], args.workers)
    print(f"{len(clips)} clips, {audio_s:.0f} s of audio at {SR} Hz")
    print(f"librosa.pyin, {args.workers} single-threaded processes: {lib_s:.1f} s = "
          f"{audio_s / lib_s:.1f}x real time")
    print(f"tts-extract pyin on {device} ({torch.get_num_threads()} threads): {our_s:.2f} s = "
          f"{audio_s / our_s:.0f}x real time")
    print(f"ratio (ours / librosa): {lib_s / our_s:.1f}x")
    print("\nparity with librosa.pyin:")
    for key, value in parity(our_results, lib_results).items():
        print(f"  {key}: {value if key == 'frames' else f'{value:.4%}'}")
    rows = {"tts-extract pyin": our_results, "librosa.pyin": lib_results}
    try:
        rows["pyworld harvest"] = world(clips, "harvest")
        rows["pyworld dio"] = world(clips, "dio")
    except ImportError:
        print("\n(pyworld not installed: harvest and dio skipped)")
    print("\naccuracy against the known contours:")
    print(f"  {'method':<18} {'RPA':>7} {'VDE':>7} {'GPE':>7}")
    for name, results in rows.items():
        a = accuracy(clips, results)
        print(f"  {name:<18} {a['RPA']:>7.2%} {a['VDE']:>7.2%} {a['GPE']:>7.2%}")


if __name__ == "__main__":
    main()
