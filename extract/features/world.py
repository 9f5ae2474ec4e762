"""WORLD's Dio and StoneMask F0 estimators (mmorise/World src/dio.cpp and stonemask.cpp), as
pyworld runs them by default (speed 1, two channels per octave, allowed range 0.1): ESPnet's
pitch (espnet2/tts/feats_extract/dio.py: pyworld.dio then pyworld.stonemask, frame_period
1000 * hop / sample_rate).

Each utterance is estimated on its own, because Dio's FFT size follows its length. The
filtering and StoneMask's windowed spectra run in float64 on the audio's device; the zero
crossings of each filtered channel and Dio's contour clean-up, a walk along the frames, in
numpy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

SAFE_GUARD = 1e-12          # world::kMySafeGuardMinimum
MAX_SCORE = 100000.0        # world::kMaximumValue
CHANNELS_IN_OCTAVE = 2.0
ALLOWED_RANGE = 0.1


def matlab_round(x: float) -> int:
    """WORLD's matlab_round: halves away from zero."""
    return int(x + 0.5) if x > 0 else int(x - 0.5)


def dio_stonemask(audio: torch.Tensor, lengths: torch.Tensor, sample_rate: int, hop_length: int,
                  n_frames: int, f0_floor: float, f0_ceil: float) -> torch.Tensor:
    """Padded audio [B, L] -> f0 [B, n_frames] in Hz (0 when unvoiced) on frames t * hop: as
    ESPnet, pyworld's frames are cut or zero-padded to the mel's count."""
    frame_period = 1000.0 * hop_length / sample_rate
    f0 = torch.zeros(audio.shape[0], n_frames, dtype=torch.float64)
    for row in range(audio.shape[0]):
        x = audio[row, : int(lengths[row])].double()
        positions = np.arange(int(1000.0 * x.numel() / sample_rate / frame_period) + 1) \
            * frame_period / 1000.0
        track = stonemask(x, sample_rate, positions,
                          dio(x, sample_rate, positions, frame_period, f0_floor, f0_ceil))
        keep = min(n_frames, len(track))
        f0[row, :keep] = torch.from_numpy(track[:keep])
    return f0.to(audio.device)


def dio(x: torch.Tensor, fs: int, positions: np.ndarray, frame_period: float, f0_floor: float,
        f0_ceil: float) -> np.ndarray:
    """pyworld.dio(x, fs, f0_floor, f0_ceil, frame_period=frame_period)[0] for 1-D float64 x."""
    bands = 1 + int(math.log(f0_ceil / f0_floor) / math.log(2) * CHANNELS_IN_OCTAVE)
    boundaries = [f0_floor * 2.0 ** ((i + 1) / CHANNELS_IN_OCTAVE) for i in range(bands)]
    y_length = 1 + x.numel()
    fft_size = _suitable_fft_size(y_length + 4 * int(1.0 + fs / boundaries[0] / 2.0))
    spectrum = _spectrum_for_estimation(x, y_length, fs, fft_size)
    halves = tuple(matlab_round(fs / boundary / 2.0) for boundary in boundaries)
    filtered = torch.fft.irfft(spectrum * _low_pass_spectra(halves, fft_size, x.device),
                               n=fft_size)
    filtered = filtered.cpu().numpy()
    candidates, scores = np.empty((bands, len(positions))), np.empty((bands, len(positions)))
    for band, boundary in enumerate(boundaries):
        delay = halves[band] * 2
        candidates[band], score = _band_candidates(filtered[band, delay: delay + y_length], fs,
                                                   boundary, f0_floor, f0_ceil, positions)
        scores[band] = score / (candidates[band] + SAFE_GUARD)
    best = candidates[scores.argmin(axis=0), np.arange(len(positions))]
    return _fix_f0_contour(best, candidates, frame_period, f0_floor)


def _suitable_fft_size(n: int) -> int:
    return int(2.0 ** (int(math.log(n) / math.log(2)) + 1))


def _spectrum_for_estimation(x: torch.Tensor, y_length: int, fs: int,
                             fft_size: int) -> torch.Tensor:
    """DC removed (the mean over y_length = len(x) + 1 samples), then low-cut at 50 Hz."""
    y = torch.zeros(fft_size, dtype=torch.float64, device=x.device)
    y[: x.numel()] = x
    y[:y_length] -= y[:y_length].sum() / y_length
    return torch.fft.rfft(y) * _low_cut_spectrum(fs, fft_size, x.device)


@lru_cache(maxsize=8)         # one entry per FFT size (a power of two) in use
def _low_cut_spectrum(fs: int, fft_size: int, device: torch.device) -> torch.Tensor:
    n = matlab_round(fs / 50.0) * 2 + 1
    i = torch.arange(1, n + 1, dtype=torch.float64)
    taps = 0.5 - 0.5 * torch.cos(i * 2.0 * math.pi / (n + 1))
    taps = -taps / taps.sum()
    half = (n - 1) // 2
    low_cut = torch.zeros(fft_size, dtype=torch.float64)
    low_cut[: n - half] = taps[half:]
    low_cut[fft_size - half:] = taps[:half]
    low_cut[0] += 1.0
    return torch.fft.rfft(low_cut).to(device)


@lru_cache(maxsize=8)         # one entry per FFT size (a power of two) in use
def _low_pass_spectra(halves: tuple[int, ...], fft_size: int,
                      device: torch.device) -> torch.Tensor:
    """Spectra [bands, fft_size // 2 + 1] of Nuttall windows 4 * half long: Dio's low-pass."""
    low_pass = torch.zeros(len(halves), fft_size, dtype=torch.float64)
    for band, half in enumerate(halves):
        t = torch.arange(half * 4, dtype=torch.float64) / (half * 4 - 1.0)
        low_pass[band, : half * 4] = (0.355768 - 0.487396 * torch.cos(2.0 * math.pi * t)
                                      + 0.144232 * torch.cos(4.0 * math.pi * t)
                                      - 0.012604 * torch.cos(6.0 * math.pi * t))
    return torch.fft.rfft(low_pass).to(device)


def _band_candidates(s: np.ndarray, fs: int, boundary: float, f0_floor: float, f0_ceil: float,
                     times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F0 candidate and its score on every frame from one low-passed channel `s`: the mean
    and spread of four interval estimates (negative- and positive-going zero crossings, peaks
    and dips), each interpolated onto the frames."""
    slope = s[1:] - s[:-1]
    events = [_zero_crossing_intervals(signal, fs) for signal in (s, -s, slope, -slope)]
    if any(len(locations) < 3 for locations, _ in events):
        return np.zeros_like(times), np.full_like(times, MAX_SCORE)
    a, b, c, d = (_interp1(locations, intervals, times) for locations, intervals in events)
    mean = (a + b + c + d) / 4.0
    score = np.sqrt(((a - mean) * (a - mean) + (b - mean) * (b - mean)
                     + (c - mean) * (c - mean) + (d - mean) * (d - mean)) / 3.0)
    outside = (mean > boundary) | (mean < boundary / 2.0) | (mean > f0_ceil) | (mean < f0_floor)
    return np.where(outside, 0.0, mean), np.where(outside, MAX_SCORE, score)


def _zero_crossing_intervals(signal: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """WORLD's ZeroCrossingEngine: (locations in s, frequencies) of the intervals between
    successive positive-to-non-positive crossings, each refined linearly."""
    edges = np.flatnonzero((signal[:-1] > 0.0) & (signal[1:] <= 0.0)) + 1
    fine = edges - signal[edges - 1] / (signal[edges] - signal[edges - 1])
    return (fine[:-1] + fine[1:]) / 2.0 / fs, fs / (fine[1:] - fine[:-1])


def _interp1(x: np.ndarray, y: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """WORLD's interp1 (histc then linear), which extrapolates from the end segments."""
    k = np.clip(np.searchsorted(x, xi, side="right"), 1, len(x) - 1)
    s = (xi - x[k - 1]) / (x[k] - x[k - 1])
    return y[k - 1] + s * (y[k] - y[k - 1])


def _fix_f0_contour(best: np.ndarray, candidates: np.ndarray, frame_period: float,
                    f0_floor: float) -> np.ndarray:
    """Dio's four clean-up steps: drop jumps, drop voicing shorter than voice_range_minimum,
    then extend each voiced section forwards and backwards along the candidates."""
    n = len(best)
    minimum = int(0.5 + 1000.0 / frame_period / f0_floor) * 2 + 1
    base = best.copy()
    base[:minimum] = 0.0
    base[max(minimum, n - minimum):] = 0.0
    step1 = np.zeros(n)
    if n > minimum:
        ratio = np.abs((base[minimum:] - base[minimum - 1:-1]) / (SAFE_GUARD + base[minimum:]))
        step1[minimum:] = np.where(ratio < ALLOWED_RANGE, base[minimum:], 0.0)
    center = (minimum - 1) // 2
    step2 = step1.copy()
    if n >= minimum:       # zero where any frame within `center` of it is
        near_zero = np.lib.stride_tricks.sliding_window_view(step1 == 0, minimum).any(axis=1)
        step2[center: n - center][near_zero] = 0.0
    voiced = step2 != 0
    ends = [i - 1 for i in range(1, n) if not voiced[i] and voiced[i - 1]]
    starts = [i for i in range(1, n) if voiced[i] and not voiced[i - 1]]
    f0 = step2.copy()
    for k, end in enumerate(ends):
        limit = n - 1 if k == len(ends) - 1 else ends[k + 1]
        for j in range(end, limit):
            f0[j + 1] = _select_best_f0(f0[j], f0[j - 1], candidates[:, j + 1])
            if f0[j + 1] == 0:
                break
    for k in range(len(starts) - 1, -1, -1):
        limit = 1 if k == 0 else starts[k - 1]
        for j in range(starts[k], limit, -1):
            f0[j - 1] = _select_best_f0(f0[j], f0[j + 1], candidates[:, j - 1])
            if f0[j - 1] == 0:
                break
    return f0


def _select_best_f0(current: float, past: float, candidates: np.ndarray) -> float:
    reference = (current * 3.0 - past) / 2.0
    best = candidates[int(np.argmin(np.abs(reference - candidates)))]
    with np.errstate(divide="ignore", invalid="ignore"):
        off = abs(1.0 - np.float64(best) / np.float64(reference))
    return 0.0 if off > ALLOWED_RANGE else float(best)


def stonemask(x: torch.Tensor, fs: int, positions: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """pyworld.stonemask(x, f0, positions, fs): each voiced frame's F0 refined by the
    instantaneous frequency of its first harmonics (two, then six), under a Blackman window
    three periods long; a correction over 20 % keeps Dio's value."""
    refined = np.zeros_like(f0)
    frames = np.flatnonzero((f0 > 0.0) & (f0 <= fs / 12.0))
    halves = (1.5 * fs / f0[frames] + 1.0).astype(np.int64)
    sizes = (2.0 ** (2 + (np.log(halves * 2.0 + 1.0) / math.log(2)).astype(np.int64))
             ).astype(np.int64)
    for fft_size in np.unique(sizes):
        group = frames[sizes == fft_size]
        group_positions, group_f0, group_halves = (
            torch.from_numpy(a).to(x.device)
            for a in (positions[group], f0[group], halves[sizes == fft_size]))
        refined[group] = _refine(x, fs, group_positions, group_f0, group_halves,
                                 int(fft_size)).cpu().numpy()
    return refined


def _refine(x: torch.Tensor, fs: int, positions: torch.Tensor, f0: torch.Tensor,
            halves: torch.Tensor, fft_size: int) -> torch.Tensor:
    """StoneMask's GetRefinedF0 for frames that share one FFT size."""
    width = int(halves.max()) * 2 + 1
    offsets = (torch.arange(width, device=x.device)[None] - halves[:, None]).double()  # -h..h
    inside = offsets <= halves[:, None]
    index_raw = _round_half_away((positions[:, None] + offsets / fs) * fs)
    window_length = (2.0 * halves[:, None].double() + 1.0) / fs
    t = (index_raw.double() - 1.0) / fs - positions[:, None]
    main = (0.42 + 0.5 * torch.cos(2.0 * math.pi * t / window_length)
            + 0.08 * torch.cos(4.0 * math.pi * t / window_length)) * inside
    padded = torch.nn.functional.pad(main, (1, 1))
    diff = -(padded[:, 2:] - padded[:, :-2]) / 2.0
    rows = torch.arange(len(f0), device=x.device)
    last = 2 * halves                                                         # window ends
    diff[rows, 0] = -main[rows, 1] / 2.0
    diff[rows, last] = main[rows, last - 1] / 2.0
    samples = x[(index_raw - 1).clamp(0, x.numel() - 1)]
    main_spectrum = torch.fft.rfft(samples * main, n=fft_size)
    diff_spectrum = torch.fft.rfft(samples * diff * inside, n=fft_size)
    numerator = (main_spectrum.real * diff_spectrum.imag
                 - main_spectrum.imag * diff_spectrum.real)
    power = main_spectrum.real * main_spectrum.real + main_spectrum.imag * main_spectrum.imag
    tentative = _fix_f0(power, numerator, fft_size, fs, f0, 2)
    ok = (tentative > 0.0) & (tentative <= f0 * 2)
    mean = torch.where(ok, _fix_f0(power, numerator, fft_size, fs,
                                   torch.where(ok, tentative, f0), 6), 0.0)
    return torch.where((mean - f0).abs() / f0 > 0.2, f0, mean)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, torch.trunc(x + 0.5), torch.trunc(x - 0.5)).long()


def _fix_f0(power: torch.Tensor, numerator: torch.Tensor, fft_size: int, fs: int,
            f0: torch.Tensor, harmonics: int) -> torch.Tensor:
    weighted, weights = torch.zeros_like(f0), torch.zeros_like(f0)
    for h in range(harmonics):
        index = _round_half_away(f0 * fft_size / fs * (h + 1)).clamp(max=fft_size // 2)[:, None]
        p = power.gather(1, index)[:, 0]
        frequency = torch.where(p == 0.0, 0.0, index[:, 0].double() * fs / fft_size
                                + numerator.gather(1, index)[:, 0] / p * fs / 2.0 / math.pi)
        amplitude = torch.sqrt(p)
        weighted += amplitude * frequency
        weights += amplitude * (h + 1)
    return weighted / (weights + SAFE_GUARD)
