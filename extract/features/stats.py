"""Corpus statistics from per-shard float64 moments: per-mel-bin and global mel mean and std, f0
mean and std over voiced frames, energy mean and std over all and over voiced frames, and f0 and
voiced-energy statistics per speaker (population std, ddof=0).

Moments are taken when a shard is written and combined in shard order, so the statistics do
not depend on batch order, on how many processes wrote the store, or on a resume.
"""

from __future__ import annotations

import numpy as np


def _moments(values: np.ndarray) -> dict:
    values = values.astype(np.float64).reshape(values.shape[0], -1 if values.ndim > 1 else 1)
    return {"count": int(values.shape[0]), "sum": values.sum(axis=0).tolist(),
            "sum_sq": np.square(values, out=values).sum(axis=0).tolist()}


def shard_moments(features: dict[str, np.ndarray],
                  speakers: tuple[list[str], np.ndarray] | None = None) -> dict:
    """Count, sum and sum of squares (float64, JSON-ready) of one shard's frames: mel, f0 and
    energy over voiced frames, energy over all; and per speaker when `speakers` labels frames:
    (names, each frame's index into names)."""
    voiced = features["voiced"]
    f0, energy_voiced = features["f0"][voiced], features["energy"][voiced]
    moments = {"mel": _moments(features["mel"]), "f0": _moments(f0),
               "energy": _moments(features["energy"]), "energy_voiced": _moments(energy_voiced)}
    if speakers is not None:
        names, labels = speakers
        labels = labels[voiced]
        order = np.argsort(labels, kind="stable")      # by speaker, each in frame order
        edges = np.searchsorted(labels[order], np.arange(len(names) + 1))
        f0, energy = f0[order], energy_voiced[order]
        moments["speakers"] = {
            name: {"f0": _moments(f0[edges[k]:edges[k + 1]]),
                   "energy_voiced": _moments(energy[edges[k]:edges[k + 1]])}
            for k, name in enumerate(names)}
    return moments


def valid_moments(moments: object, n_mels: int) -> bool:
    """Whether `moments` (a shard's, read back from its marker) has the form shard_moments
    gives them, with mel over `n_mels` bins: a damaged marker must not reach `combine`."""
    def valid(part: object, width: int) -> bool:
        return (isinstance(part, dict) and type(part.get("count")) is int
                and part["count"] >= 0
                and all(isinstance(part.get(key), list) and len(part[key]) == width
                        and all(type(v) in (int, float) for v in part[key])
                        for key in ("sum", "sum_sq")))

    if not isinstance(moments, dict) or not valid(moments.get("mel"), n_mels) or not all(
            valid(moments.get(key), 1) for key in ("f0", "energy", "energy_voiced")):
        return False
    speakers = moments.get("speakers", {})
    return isinstance(speakers, dict) and all(
        isinstance(part, dict) and valid(part.get("f0"), 1) and valid(part.get("energy_voiced"), 1)
        for part in speakers.values())


def _mean_std(parts: list[dict]) -> tuple[int, list, list]:
    """Combined count, mean and population std of moments, added in order."""
    count = sum(p["count"] for p in parts)
    width = len(parts[0]["sum"])
    if count == 0:  # e.g. no voiced frame at all; JSON has no NaN
        return 0, [None] * width, [None] * width
    total, total_sq = np.zeros(width), np.zeros(width)
    for p in parts:
        total += p["sum"]
        total_sq += p["sum_sq"]
    mean = total / count
    return count, mean.tolist(), np.sqrt(np.maximum(total_sq / count - mean ** 2, 0)).tolist()


def combine(shards: list[dict]) -> dict:
    """The store's `stats` attribute from every shard's moments, in shard order."""
    def scalar(key: str, parts: list[dict]) -> tuple[int, float | None, float | None]:
        count, (mean,), (std,) = _mean_std([p[key] for p in parts])
        return count, mean, std

    frames, mel_mean, mel_std = _mean_std([s["mel"] for s in shards])
    flat = [{"count": s["mel"]["count"] * len(s["mel"]["sum"]), "sum": [sum(s["mel"]["sum"])],
             "sum_sq": [sum(s["mel"]["sum_sq"])]} for s in shards]
    _, (mel_mean_global,), (mel_std_global,) = _mean_std(flat)
    voiced, f0_mean, f0_std = scalar("f0", shards)
    _, energy_mean, energy_std = scalar("energy", shards)
    _, energy_voiced_mean, energy_voiced_std = scalar("energy_voiced", shards)
    stats = {"mel_mean": mel_mean, "mel_std": mel_std, "mel_mean_global": mel_mean_global,
             "mel_std_global": mel_std_global, "f0_mean": f0_mean, "f0_std": f0_std,
             "f0_voiced_frames": voiced, "energy_mean": energy_mean, "energy_std": energy_std,
             "energy_voiced_mean": energy_voiced_mean, "energy_voiced_std": energy_voiced_std,
             "frames": frames}
    by_speaker: dict[str, list[dict]] = {}      # in order of first appearance
    for shard in shards:
        for name, part in shard.get("speakers", {}).items():
            by_speaker.setdefault(name, []).append(part)
    if by_speaker:
        stats["speakers"] = {}
        for name, parts in by_speaker.items():
            count, mean, std = scalar("f0", parts)
            _, e_mean, e_std = scalar("energy_voiced", parts)
            stats["speakers"][name] = {"f0_mean": mean, "f0_std": std, "f0_voiced_frames": count,
                                       "energy_voiced_mean": e_mean, "energy_voiced_std": e_std}
    return stats
