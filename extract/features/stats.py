"""Corpus statistics from per-shard float64 moments: per-mel-bin mean and std, f0 mean and std
over voiced frames, energy mean and std (population std, ddof=0).

Moments are taken when a shard is written and combined in shard order, so the statistics do
not depend on batch order, on how many processes wrote the store, or on a resume.
"""

from __future__ import annotations

import numpy as np


def shard_moments(features: dict[str, np.ndarray]) -> dict:
    """Count, sum and sum of squares (float64, JSON-ready) of one shard's frames."""
    def moments(values: np.ndarray) -> dict:
        values = values.astype(np.float64).reshape(values.shape[0], -1 if values.ndim > 1 else 1)
        return {"count": int(values.shape[0]), "sum": values.sum(axis=0).tolist(),
                "sum_sq": np.square(values).sum(axis=0).tolist()}

    return {"mel": moments(features["mel"]), "f0": moments(features["f0"][features["voiced"]]),
            "energy": moments(features["energy"])}


def combine(shards: list[dict]) -> dict:
    """The store's `stats` attribute from every shard's moments, in shard order."""
    def mean_std(key: str) -> tuple[int, list, list]:
        count = sum(s[key]["count"] for s in shards)
        width = len(shards[0][key]["sum"])
        if count == 0:  # e.g. no voiced frame at all; JSON has no NaN
            return 0, [None] * width, [None] * width
        total = np.zeros(width)
        total_sq = np.zeros(width)
        for s in shards:
            total += s[key]["sum"]
            total_sq += s[key]["sum_sq"]
        mean = total / count
        return count, mean.tolist(), np.sqrt(np.maximum(total_sq / count - mean ** 2, 0)).tolist()

    frames, mel_mean, mel_std = mean_std("mel")
    voiced, (f0_mean,), (f0_std,) = mean_std("f0")
    _, (energy_mean,), (energy_std,) = mean_std("energy")
    return {"mel_mean": mel_mean, "mel_std": mel_std, "f0_mean": f0_mean, "f0_std": f0_std,
            "f0_voiced_frames": voiced, "energy_mean": energy_mean, "energy_std": energy_std,
            "frames": frames}
