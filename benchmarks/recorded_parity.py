"""Parity on recorded speech (a check, not a speed benchmark): every preset's log-mel against
its toolkit's transcription (tests/reference.py), our pyin against librosa.pyin on its own
frames and as Coqui's compute_f0 calls it, and ESPnet's dio + stonemask against pyworld, on a
folder of WAV or FLAC files (yours: a corpus's wavs/), each resampled by librosa (soxr) to the
rate in use.

    .venv/bin/python benchmarks/recorded_parity.py [FOLDER] [--limit N]

Without FOLDER: the two recordings in tests/data/recorded. Needs the test extras (librosa,
pyworld); 452 s of audio took 5 minutes on 2 cores, librosa.pyin most of it. It holds every
file in memory at each rate in use, so take a sample of a large corpus with --limit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import reference                                                  # noqa: E402
from pitch_vs_librosa import SR, librosa_pyin, ours, parity       # noqa: E402

from extract.config import load_preset                            # noqa: E402
from extract.features import estimate_pitch, extract_features     # noqa: E402

TOLERANCE = 1e-4       # the presets' parity tests' bound: log domain, float32


def read_clips(folder: Path, limit: int | None) -> dict[str, tuple[np.ndarray, int]]:
    """{file relative to folder: (mono float32 audio, rate)}."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    clips = {}
    for path in paths[:limit]:
        y, rate = soundfile.read(path, dtype="float32", always_2d=True)
        clips[str(path.relative_to(folder))] = (y.mean(axis=1), rate)
    if not clips:
        raise SystemExit(f"no .wav or .flac files under {folder}")
    return clips


def at_rate(clips: dict[str, tuple[np.ndarray, int]], rate: int) -> dict[str, np.ndarray]:
    import librosa

    return {name: librosa.resample(y, orig_sr=sr, target_sr=rate).astype(np.float32)
            for name, (y, sr) in clips.items()}


def log_mel(y: np.ndarray, preset) -> np.ndarray:
    features = extract_features(torch.from_numpy(y)[None], torch.tensor([len(y)]), preset)
    return features["mel"][0].numpy()


def f0(y: np.ndarray, preset) -> np.ndarray:
    """The preset's f0 alone, on its mel frames."""
    return estimate_pitch(torch.from_numpy(y)[None], torch.tensor([len(y)]), preset,
                          preset.num_frames(len(y)))[0][0].numpy()


def mel_row(name: str, clips: dict[str, np.ndarray]) -> str:
    """The preset's worst log-mel difference from its toolkit over the clips."""
    preset = load_preset(name)
    worst, where = 0.0, ""
    for clip, y in clips.items():
        mel, expected = log_mel(y, preset), reference.PRESET_MELS[name](y)
        if mel.shape != expected.shape:
            return f"| `{name}` | frame counts differ on {clip}: {mel.shape} vs {expected.shape} |"
        if (difference := float(np.abs(mel - expected).max())) >= worst:
            worst, where = difference, clip
    verdict = "within" if worst <= TOLERANCE else "OVER"
    return f"| `{name}` | {worst:.1e} ({verdict} {TOLERANCE:g}) | {where} |"


def pitch_rows(clips: dict[str, np.ndarray]) -> list[str]:
    """pyin on librosa's grid, the coqui-fastpitch preset's f0 (reflect padding, compute_f0's
    extension) and the espnet preset's (dio + stonemask) against their toolkits."""
    mine, _ = ours([(y, None, None) for y in clips.values()], torch.device("cpu"), 8)
    figures = parity(mine, [librosa_pyin(y) for y in clips.values()])
    rows = [f"| pyin vs librosa.pyin, {figures['frames']} frames | same voicing "
            f"{figures['same voicing']:.4%}, identical f0 and voicing "
            f"{figures['identical f0 and voicing']:.4%} |"]
    coqui, espnet = load_preset("coqui-fastpitch"), load_preset("espnet")
    same = total = 0
    worst, voicing = 0.0, []
    for y in clips.values():
        expected = reference.coqui_f0(y).astype(np.float32)
        same += int((f0(y, coqui) == expected).sum())
        total += len(expected)
        estimate = f0(y, espnet).astype(np.float64)
        expected = reference.espnet_pitch(y, len(estimate))
        voiced = expected > 0
        voicing.append((estimate > 0) == voiced)
        if voiced.any():
            worst = max(worst, float(np.max(np.abs(estimate[voiced] / expected[voiced] - 1))))
    rows.append(f"| coqui-fastpitch f0 vs compute_f0, {total} frames | identical "
                f"{same / total:.4%} |")
    rows.append(f"| espnet f0 vs pyworld dio + stonemask | same voicing "
                f"{np.concatenate(voicing).mean():.4%}, f0 within {worst:.1e} relative |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / "tests/data/recorded")
    parser.add_argument("--limit", type=int, help="only the first N files")
    args = parser.parse_args()
    clips = read_clips(args.folder, args.limit)
    seconds = sum(len(y) / sr for y, sr in clips.values())
    print(f"{len(clips)} files, {seconds:.1f} s of audio, from {args.folder}\n")
    print("| preset | worst log-mel difference from its toolkit | in |\n|---|---|---|")
    by_rate: dict[int, dict[str, np.ndarray]] = {}
    for name in sorted(reference.PRESET_MELS):
        rate = load_preset(name).sample_rate
        by_rate.setdefault(rate, at_rate(clips, rate))
        print(mel_row(name, by_rate[rate]), flush=True)
    print("\n| pitch | agreement |\n|---|---|")
    print("\n".join(pitch_rows(by_rate.get(SR) or at_rate(clips, SR))))


if __name__ == "__main__":
    main()
