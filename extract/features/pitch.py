"""Pitch (F0) by YIN, batched, on the mel's own frame centres.

The difference function, cumulative mean normalisation, trough rule and parabolic refinement
are librosa.yin's (librosa >= 0.11). A frame is voiced when some trough of the normalised
difference lies below `threshold` (the first such trough gives the period) and the frame is
louder than `silence_db`; otherwise f0 is 0.

Shapes: audio [B, L] (zero beyond each utterance's length) -> f0 [B, T], voiced [B, T].
"""

from __future__ import annotations

import math

import torch

from extract.config import Preset
from extract.features.spectral import reflect_pad

MAX_FRAMES_PER_CHUNK = 8192


def pitch_frames(audio: torch.Tensor, lengths: torch.Tensor, preset: Preset,
                 num_frames: int) -> torch.Tensor:
    """Frames [B, T, N] of length N = pitch.frame_length centred on the mel frame centres
    (t * hop + preset.frame_center_offset), padded with zeros or by reflecting each row at its
    own ends (pitch.padding)."""
    n, hop = preset.pitch.frame_length, preset.hop_length
    if preset.pitch.whole_hop_extension:
        audio, lengths = extend_whole_hops(audio, lengths, hop)
    if preset.pitch.padding == "reflect":
        padded = reflect_pad(audio, lengths, n // 2)
        start = preset.frame_center_offset
    else:
        left = n // 2 - preset.frame_center_offset
        padded = torch.nn.functional.pad(audio, (left, n))
        start = 0
    return padded[:, start:].unfold(1, n, hop)[:, :num_frames]


def extend_whole_hops(audio: torch.Tensor, lengths: torch.Tensor,
                      hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coqui's compute_f0 alignment: each row whose length is a whole number of hops gets
    hop // 2 more samples reflected about its last one (np.pad mode "reflect"): [B, L] ->
    ([B, L + hop // 2], new lengths). The frame count does not change."""
    extra = hop // 2
    lengths = lengths.to(audio.device)
    out = torch.nn.functional.pad(audio, (0, extra))
    whole = lengths % hop == 0
    rows = whole.nonzero()[:, 0]
    steps = torch.arange(1, extra + 1, device=audio.device)
    last = lengths[rows, None] - 1
    out[rows[:, None], last + steps] = audio[rows[:, None], (last - steps).clamp(min=0)]
    return out, lengths + extra * whole


def yin(frames: torch.Tensor, sample_rate: int, fmin: float, fmax: float, threshold: float,
        silence_db: float) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN over frames [..., N] -> (f0 [...] in Hz with 0 when unvoiced, voiced [...])."""
    shape, n = frames.shape[:-1], frames.shape[-1]
    flat = frames.reshape(-1, n)
    f0 = torch.empty(flat.shape[0], dtype=torch.float32, device=frames.device)
    voiced = torch.empty(flat.shape[0], dtype=torch.bool, device=frames.device)
    for start in range(0, flat.shape[0], MAX_FRAMES_PER_CHUNK):
        part = slice(start, start + MAX_FRAMES_PER_CHUNK)
        f0[part], voiced[part] = _yin_rows(flat[part], sample_rate, fmin, fmax, threshold,
                                           silence_db)
    return f0.reshape(shape), voiced.reshape(shape)


def _yin_rows(x: torch.Tensor, sample_rate: int, fmin: float, fmax: float, threshold: float,
              silence_db: float) -> tuple[torch.Tensor, torch.Tensor]:
    min_period, max_period = period_range(sample_rate, fmin, fmax, x.shape[1])
    cmnd = cumulative_mean_normalized_difference(x, min_period, max_period)

    shifts = parabolic_shifts(cmnd)
    candidates = trough_mask(cmnd) & (cmnd < threshold)

    lag = torch.argmax(candidates.to(torch.uint8), dim=1)
    period = min_period + lag + torch.gather(shifts, 1, lag[:, None])[:, 0]
    loud = x.square().mean(dim=1) > 10.0 ** (silence_db / 10.0)
    voiced = candidates.any(dim=1) & loud
    f0 = torch.where(voiced, sample_rate / period, torch.zeros_like(period))
    return f0, voiced


def cumulative_mean_normalized_difference(x: torch.Tensor, min_period: int,
                                          max_period: int) -> torch.Tensor:
    """librosa's CMND for frames [..., N] (a strided view of the audio will do) ->
    [..., max_period - min_period + 1].

    d[k] = 2 (acf[0] - acf[k]) - sum_{m<k} x[m]^2, acf from an FFT autocorrelation long enough
    (N + max_period) that lags up to max_period do not wrap;
    cmnd[k] = d[k] / (mean(d[1..k]) + tiny).
    """
    n_fft = next_fast_len(x.shape[-1] + max_period)
    spectrum = torch.fft.rfft(x, n=n_fft)
    parts = torch.view_as_real(spectrum)
    power = torch.addcmul(parts[..., 0].square(), parts[..., 1], parts[..., 1])   # one pass
    acf = torch.fft.irfft(power, n=n_fft)[..., :max_period + 1]
    energy = torch.cumsum(x[..., :max_period].square(), dim=-1)
    diff = 2 * (acf[..., :1] - acf[..., 1:]) - energy
    mean = torch.cumsum(diff, dim=-1) / torch.arange(1, max_period + 1, device=x.device)
    tiny = torch.finfo(x.dtype).tiny
    return diff[..., min_period - 1:] / (mean[..., min_period - 1:] + tiny)


def period_range(sample_rate: int, fmin: float, fmax: float, frame_length: int) -> tuple[int, int]:
    """(min_period, max_period) in samples, as librosa.yin and librosa.pyin choose them."""
    return (int(math.floor(sample_rate / fmax)),
            min(int(math.ceil(sample_rate / fmin)), frame_length - 1))


def trough_mask(cmnd: torch.Tensor) -> torch.Tensor:
    """Local minima of [R, K] rows (librosa.util.localmin: x[i] < x[i-1] and x[i] <= x[i+1]);
    the first lag counts if x[0] < x[1], the last if x[-1] < x[-2]."""
    left, mid, right = cmnd[:, :-2], cmnd[:, 1:-1], cmnd[:, 2:]
    trough = torch.zeros_like(cmnd, dtype=torch.bool)
    trough[:, 1:-1] = (mid < left) & (mid <= right)
    trough[:, 0] = cmnd[:, 0] < cmnd[:, 1]
    trough[:, -1] = cmnd[:, -1] < cmnd[:, -2]
    return trough


def parabolic_shifts(x: torch.Tensor) -> torch.Tensor:
    """Offset of the parabola through each point and its neighbours; 0 at the ends or when the
    optimum falls outside [-1, 1] (librosa's _parabolic_interpolation)."""
    inner = parabolic_shift(x[:, :-2], x[:, 1:-1], x[:, 2:])
    return torch.nn.functional.pad(inner, (1, 1))


def parabolic_shift(prev: torch.Tensor, mid: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """parabolic_shifts for given points and their neighbours, elementwise."""
    a = nxt + prev - 2 * mid
    b = (nxt - prev) / 2
    return torch.where(b.abs() >= a.abs(), torch.zeros_like(a), -b / a)


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (a size FFT libraries handle fast)."""
    best, p2 = 1 << (n - 1).bit_length(), 1
    while p2 < best:
        p3 = p2
        while p3 < best:
            p5 = p3
            while p5 < n:
                p5 *= 5
            best = min(best, p5)
            p3 *= 3
        p2 *= 2
    return best
