"""Corpus statistics accumulated batch by batch in float64: per-mel-bin mean and std, f0 mean
and std over voiced frames, energy mean and std (population std, ddof=0)."""

from __future__ import annotations

import torch


class _Moments:
    def __init__(self, width: int, device: torch.device):
        self.count = 0
        self.sum = torch.zeros(width, dtype=torch.float64, device=device)
        self.sum_sq = torch.zeros(width, dtype=torch.float64, device=device)

    def add(self, values: torch.Tensor) -> None:
        """values [n, width] (or [n] for width 1)."""
        values = values.to(torch.float64).reshape(values.shape[0], len(self.sum))
        self.count += values.shape[0]
        self.sum += values.sum(dim=0)
        self.sum_sq += values.square().sum(dim=0)

    def result(self) -> tuple[list, list]:
        if self.count == 0:  # e.g. no voiced frame at all; JSON has no NaN
            return [None] * len(self.sum), [None] * len(self.sum)
        mean = self.sum / self.count
        std = (self.sum_sq / self.count - mean.square()).clamp(min=0).sqrt()
        return mean.tolist(), std.tolist()


class FeatureStats:
    def __init__(self, n_mels: int, device: torch.device):
        self.mel = _Moments(n_mels, device)
        self.f0 = _Moments(1, device)
        self.energy = _Moments(1, device)

    def add(self, mel: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor,
            energy: torch.Tensor) -> None:
        """Frames of one or more utterances, concatenated: mel [n, n_mels], others [n]."""
        self.mel.add(mel)
        self.f0.add(f0[voiced])
        self.energy.add(energy)

    def result(self) -> dict:
        mel_mean, mel_std = self.mel.result()
        (f0_mean,), (f0_std,) = self.f0.result()
        (energy_mean,), (energy_std,) = self.energy.result()
        return {"mel_mean": mel_mean, "mel_std": mel_std, "f0_mean": f0_mean, "f0_std": f0_std,
                "f0_voiced_frames": self.f0.count, "energy_mean": energy_mean,
                "energy_std": energy_std, "frames": self.mel.count}
