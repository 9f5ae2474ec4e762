"""Anti-aliased resampling on the device (torchaudio's kaiser-window sinc), an utterance at a time.

DALI's audio_resample does not filter when downsampling (a 15 kHz tone at 44.1 kHz comes out
at 7050 Hz at full level), so every rate change goes through here.

torchaudio's kernel holds one row per output phase, each as wide as a whole input period: for
rates with a small common divisor that is mostly zeros (44056 -> 22050 Hz: 11025 rows of 44,600
taps; 8.6 GB of memory and 50 s of CPU to resample 2 s). Those rates take `_sparse_resample`:
the same windowed sinc at only the taps where it is not zero, gathered a block of output
phases at a time: about 0.04 s a file of 10 s at 44101 Hz on 2 cores (22,050 phases).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from extract.precision import ieee_float32

# librosa's / resampy's "kaiser_best" settings: about -110 dB of aliasing.
KAISER_BEST = dict(lowpass_filter_width=64, rolloff=0.9475937167399596,
                   resampling_method="sinc_interp_kaiser", beta=14.769656459379492)
MAX_DENSE_KERNEL = 1 << 22      # elements of torchaudio's kernel; above it, the sparse one
SPARSE_BLOCK = 1 << 22          # input samples the sparse path gathers at once (16 MB)


@lru_cache(maxsize=32)
def _resampler(orig_rate: int, new_rate: int, device: torch.device) -> torch.nn.Module:
    import torchaudio

    # built in float64: by default torchaudio rounds each phase's offset to float32, which put
    # errors of up to 6e-5 into resampled noise of std 1 (16 kHz -> 22.05 kHz); 2e-6 built so
    resampler = torchaudio.transforms.Resample(orig_rate, new_rate, **KAISER_BEST,
                                               dtype=torch.float64)
    return resampler.to(device, torch.float32)


def _periods(orig_rate: int, new_rate: int) -> tuple[int, int]:
    """Input and output samples in one period of the resampling pattern: each rate / gcd."""
    gcd = math.gcd(orig_rate, new_rate)
    return orig_rate // gcd, new_rate // gcd


def _dense_kernel_size(orig_rate: int, new_rate: int) -> int:
    """Elements of torchaudio's kernel: new/gcd rows of orig/gcd + 2 * width taps."""
    orig, new = _periods(orig_rate, new_rate)
    width = math.ceil(KAISER_BEST["lowpass_filter_width"] * orig /
                      (min(orig, new) * KAISER_BEST["rolloff"]))
    return new * (2 * width + orig)


@lru_cache(maxsize=8)
def _sparse_kernel(orig_rate: int, new_rate: int, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """torchaudio's kaiser-sinc weights around each output phase only: weights [new/gcd, taps]
    (float32), and the offset of each phase's first tap within its input period [new/gcd].

    Output j = k * new/gcd + phase reads input samples k * orig/gcd + first[phase] + [0, taps).
    """
    orig, new = _periods(orig_rate, new_rate)
    zeros = KAISER_BEST["lowpass_filter_width"]
    base = min(orig, new) * KAISER_BEST["rolloff"]
    reach = zeros * orig / base            # input samples either side of an output's centre
    phase = torch.arange(new, dtype=torch.float64)[:, None]
    first = torch.floor(phase * orig / new - reach)
    offset = first + torch.arange(math.ceil(2 * reach) + 2, dtype=torch.float64)
    # torchaudio's _get_sinc_resample_kernel, at these offsets
    t = ((offset / orig - phase / new) * base).clamp(-zeros, zeros)
    beta = torch.tensor(KAISER_BEST["beta"], dtype=torch.float64)
    window = torch.i0(beta * torch.sqrt(1 - (t / zeros) ** 2)) / torch.i0(beta)
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), t.sin() / t)
    weights = (sinc * window * (base / orig)).to(torch.float32)
    return weights.to(device), first[:, 0].long().to(device)


def _sparse_resample(samples: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """[n] -> [ceil(n * new / orig)]: torchaudio's resample as computed in float64, to float32
    rounding, over only the taps where its kernel is not zero; the input windows of a block of
    output phases (about SPARSE_BLOCK samples) are gathered at once."""
    weights, first = _sparse_kernel(orig_rate, new_rate, samples.device)
    orig, new = _periods(orig_rate, new_rate)
    taps = weights.shape[1]
    out_len = resampled_length(len(samples), orig_rate, new_rate)
    periods = -(-out_len // new)
    lowest, highest = int(first[0]), int(first[-1])        # first rises with the phase
    left = max(0, -lowest)
    right = max(0, periods * orig + highest + taps - len(samples))
    windows = torch.nn.functional.pad(samples, (left, right)).unfold(0, taps, 1)  # [n', taps]
    period_starts = torch.arange(periods, device=samples.device)[:, None] * orig + left
    out = samples.new_empty(periods, new)
    block = max(1, SPARSE_BLOCK // (periods * taps))
    for phase in range(0, new, block):
        phases = slice(phase, phase + block)
        inputs = windows[period_starts + first[phases]]      # [periods, phases, taps]
        out[:, phases] = (inputs * weights[phases]).sum(-1)   # closer than a matmul's sums
    return out.reshape(-1)[:out_len]


def resampled_length(num_samples: int, orig_rate: int, new_rate: int) -> int:
    """Samples after resampling, as torchaudio computes it: ceil(n * new / orig)."""
    return -(-num_samples * new_rate // orig_rate)


@ieee_float32()
def resample(samples: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """One utterance's samples [n] at orig_rate -> [ceil(n * new / orig)] at new_rate."""
    if _dense_kernel_size(orig_rate, new_rate) > MAX_DENSE_KERNEL:
        return _sparse_resample(samples, orig_rate, new_rate)
    return _resampler(orig_rate, new_rate, samples.device)(samples)


def to_preset_rate(audio: torch.Tensor, lengths: torch.Tensor, rates: list[int],
                   target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded rows [B, L], each at its own rate, at `target` -> ([B, L'], lengths [B]), zero
    past each row's new length.

    Each row is resampled alone, over its own samples: convolution and matrix routines choose
    their algorithm, and with it their rounding, by the input's shape, so rows resampled
    together would come out a float apart depending on the rest of their batch (the batch
    size, the number of ranks, what a --resume had left to do)."""
    if all(r == target for r in rates):
        return audio, lengths
    counts = lengths.tolist()
    new_counts = [resampled_length(n, rate, target) for n, rate in zip(counts, rates)]
    out = audio.new_zeros(len(rates), max(new_counts))
    for row, (n, rate) in enumerate(zip(counts, rates)):
        samples = audio[row, :n]
        out[row, :new_counts[row]] = samples if rate == target else \
            resample(samples, rate, target)
    return out, torch.tensor(new_counts, dtype=lengths.dtype, device=lengths.device)
