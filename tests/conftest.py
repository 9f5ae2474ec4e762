"""Shared fixtures: small synthetic corpora written as real WAV files."""

from __future__ import annotations

import os
from pathlib import Path

import torch

if not torch.cuda.is_available():   # Triton kernels run on the CPU in its interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest

from extract.demo import synth_utterance
from extract.input.wav import write_wav


def write_corpus(folder: Path, specs: list[tuple[str, float, int, int, str]],
                 lj_style: bool = True) -> Path:
    """specs: (id, seconds, rate, channels, format) -> folder with metadata.csv and wavs/."""
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (utt_id, seconds, rate, channels, fmt) in enumerate(specs):
        y = synth_utterance(seconds, rate, np.random.default_rng(k + 100))
        if channels == 2:
            y = np.stack([y, -0.5 * y], axis=1)
        write_wav(folder / "wavs" / f"{utt_id}.wav", y, rate, fmt)
        lines.append(f"{utt_id}|Text of {utt_id}.|Normalized {utt_id}." if lj_style
                     else f"{utt_id}.wav|Raw text {k}|")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


MIXED_SPECS = [
    ("a", 2.0, 22050, 1, "pcm16"),
    ("b", 1.3, 44100, 2, "pcm24"),
    ("c", 3.1, 48000, 1, "float32"),
    ("d", 0.7, 16000, 1, "pcm32"),
    ("e", 2.6, 22050, 2, "pcm16"),
    ("f", 1.0, 22050, 1, "float32"),
]


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("mixed"), MIXED_SPECS)


@pytest.fixture(scope="session")
def mixed_store(mixed_corpus, tmp_path_factory) -> Path:
    from extract.job import run_job

    out = tmp_path_factory.mktemp("stores") / "mixed.zarr"
    run_job(mixed_corpus, out, device="cpu", batch_size=4, show_progress=False)
    return out
