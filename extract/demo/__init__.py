"""The bundled demo corpus: the seed transcripts with speech-like audio synthesised offline.

The audio is deterministic (seeded per line): voiced stretches are harmonic series on a smooth
F0 contour shaped by moving formants, separated by noise bursts and short pauses, about as long
as the text would take to say. A few files use other rates, channel counts and sample formats
so that the demo exercises resampling, downmixing and decoding.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from extract.input.audio import write_wav

SEED_METADATA = "llm_intro_metadata.csv"
SAMPLE_RATE = 22050
SECONDS_PER_CHAR = 0.06
CONTROL_STEP = 64
# (rate, channels, format) for every tenth file from position 3 and 7; the rest 22.05 kHz pcm16
VARIANTS = {3: (44100, 2, "pcm24"), 7: (48000, 1, "float32")}


def formant_envelope(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Sum of resonance peaks (Hz, bandwidth 90 Hz) at `freqs` [..., K] for formants [3, L]."""
    gain = np.zeros_like(freqs)
    for k, f in enumerate(formants):
        gain += (0.6 ** k) / (1 + ((freqs - f[:, None]) / 90.0) ** 2)
    return gain


def synth_utterance(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like mono audio in [-1, 1]."""
    return synth_with_truth(seconds, rate, rng)[0]


def synth_with_truth(seconds: float, rate: int, rng: np.random.Generator,
                     f0_range: tuple[float, float] = (95, 230)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(audio [n] in [-1, 1], f0 [n] in Hz, voicing [n] in [0, 1]): the harmonic part follows
    the known contour f0 and is weighted by voicing, so both are ground truth for pitch."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    base = rng.uniform(*f0_range)
    f0 = base * (1.1 - 0.2 * t / seconds) * (1 + 0.06 * np.sin(2 * np.pi * rng.uniform(2, 5) * t
                                                                   + rng.uniform(0, 6.3)))
    # segments: voiced ~200 ms, unvoiced ~60 ms, pause ~80 ms
    voiced, noise = np.zeros(n), np.zeros(n)
    pos = int(0.1 * rate)
    while pos < n - int(0.1 * rate):
        kind = rng.choice(3, p=[0.6, 0.25, 0.15])
        length = int(rng.uniform(*((0.12, 0.3), (0.04, 0.09), (0.05, 0.12))[kind]) * rate)
        ramp = np.hanning(length) if length > 2 else np.ones(length)
        span = slice(pos, min(pos + length, n))
        if kind < 2:  # kind 2 is a pause
            (voiced, noise)[kind][span] = ramp[: span.stop - span.start]
        pos += length
    formants = np.stack([np.interp(t, np.linspace(0, seconds, 12), rng.uniform(lo, hi, 12))
                         for lo, hi in ((300, 850), (900, 2300), (2400, 3200))])
    harmonics = np.arange(1, 41)[:, None]
    control = slice(None, None, CONTROL_STEP)   # amplitudes change slowly: compute them sparsely
    freqs = harmonics * f0[None, control]
    amps = formant_envelope(freqs.T, formants[:, control]).T * (freqs < rate / 2 - 500)
    rotor = np.exp(2j * np.pi * np.cumsum(f0) / rate)
    harmonic, speech = rotor.copy(), np.zeros(n)
    for amp in amps:
        speech += np.interp(t, t[control], amp) * harmonic.imag
        harmonic *= rotor
    speech *= voiced
    hiss = np.convolve(rng.standard_normal(n), [1, -0.9], mode="same") * noise * 0.15
    y = speech + hiss + 0.002 * rng.standard_normal(n)
    return 0.8 * y / np.abs(y).max(), f0, voiced


def write_demo_corpus(folder: Path) -> Path:
    """Write metadata.csv and wavs/ for the seed transcripts into `folder`; return `folder`.
    A folder that holds anything but an earlier demo corpus is refused, so a dataset is never
    overwritten."""
    folder = Path(folder)
    seed = resources.files("extract.demo").joinpath(SEED_METADATA).read_text(encoding="utf-8")
    lines = [line for line in seed.splitlines() if line.strip()]
    metadata = "\n".join(lines) + "\n"
    if folder.exists() and not (folder.is_dir() and _empty_or_demo(folder, metadata)):
        raise FileExistsError(f"{folder} exists and is neither an empty folder nor an earlier "
                              "demo corpus; name a new folder for the demo corpus")
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    for number, line in enumerate(lines):
        name, text = line.split("|")[:2]
        rate, channels, fmt = VARIANTS.get(number % 10, (SAMPLE_RATE, 1, "pcm16"))
        rng = np.random.default_rng(number)
        seconds = float(np.clip(len(text) * SECONDS_PER_CHAR, 1.5, 12.0))
        y = synth_utterance(seconds, rate, rng)
        if channels > 1:
            y = np.stack([y, 0.9 * y], axis=1)
        write_wav(folder / "wavs" / name, y, rate, fmt)
    (folder / "metadata.csv").write_text(metadata, encoding="utf-8")
    return folder


def _empty_or_demo(folder: Path, metadata: str) -> bool:
    existing = folder / "metadata.csv"
    return (not any(folder.iterdir())
            or existing.is_file() and existing.read_bytes() == metadata.encode())
