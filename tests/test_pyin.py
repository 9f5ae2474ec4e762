"""pyin against librosa.pyin (>= 0.11) and its pieces against librosa/scipy (the trough sums
also by their Triton kernel), and the Viterbi decoders (torch, and the Triton kernel) against
librosa.sequence.viterbi; Triton kernels run under TRITON_INTERPRET=1 without a GPU, and also go
through Triton's CUDA compiler."""

import functools
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import librosa
import librosa.core.pitch
import numpy as np
import pytest
import scipy.stats
import soundfile
import torch

import extract.features.pyin as pyin_module
from extract.config import C2_HZ, C7_HZ, PresetError, load_preset
from extract.demo import synth_utterance
from extract.features import extract_features
from extract.features.pyin import (BINS_PER_SEMITONE, N_THRESHOLDS, first_lowest, frame_blocks,
                                   log_observation_probabilities, pitch_bin_count, pyin,
                                   threshold_events, threshold_prior, transition_width,
                                   trough_probabilities)
from extract.features.viterbi import TransitionBands, forward_values, viterbi_torch
from extract.kernels.viterbi import NUM_WARPS, UNROLL, viterbi_triton
from conftest import recorded_speech
from reference import load_for_hifigan

SR, N, HOP = 22050, 1024, 256
FMIN, FMAX = C2_HZ, C7_HZ
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = np.finfo(np.float64).tiny
KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"   # cpu: the Triton interpreter


def librosa_transition(n_bins: int, width: int, switch_prob: float = 0.01) -> np.ndarray:
    """The dense matrix librosa.pyin builds."""
    local = librosa.sequence.transition_local(n_bins, width, window="triangle", wrap=False)
    return np.kron(librosa.sequence.transition_loop(2, 1 - switch_prob), local)


def librosa_viterbi(probs: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """probs [S, T] -> states [T], with pyin's uniform start."""
    n = probs.shape[0]
    return librosa.sequence.viterbi(probs, transition, p_init=np.full(n, 1 / n))


def random_problems(n_bins: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """[B, 2n, T] observation probabilities with zeros, ties, an all-zero frame and forced
    jumps further than the band allows."""
    rng = np.random.default_rng(seed)
    probs = rng.random((batch, 2 * n_bins, steps)) ** 6
    probs[rng.random(probs.shape) < 0.6] = 0
    probs[0, :, 3] = 0                                    # nothing possible
    probs[1] = np.round(probs[1], 1)                      # many exact ties
    probs[2, :, 4:] = 0                                   # impossible transitions: only
    probs[2, 0, 4:steps:2] = 1                            # bins 0 and n - 1 alternate
    probs[2, n_bins - 1, 5:steps:2] = 1
    probs[3] = probs[3, :1]                               # every state equal
    return probs


@pytest.mark.parametrize("n_bins,width", [(601, 51), (37, 11)])
def test_transition_bands_are_librosas_matrix_bit_for_bit(n_bins, width):
    log_dense = np.log(librosa_transition(n_bins, width) + TINY)
    bands = TransitionBands.from_librosa_definition(n_bins, width, 0.01)
    half = width // 2
    for j in range(n_bins):
        src = np.arange(j - half, j + half + 1)
        ok = (src >= 0) & (src < n_bins)
        np.testing.assert_array_equal(bands.same[j].numpy()[ok], log_dense[src[ok], j])
        np.testing.assert_array_equal(bands.switch[j].numpy()[ok], log_dense[n_bins + src[ok], j])
        np.testing.assert_array_equal(bands.switch[j].numpy()[ok], log_dense[src[ok], n_bins + j])
        assert np.isneginf(bands.same[j].numpy()[~ok]).all()
        # everything outside the band is librosa's log(tiny)
        outside = np.ones(n_bins, bool)
        outside[src[ok]] = False
        assert (log_dense[:n_bins][outside, j] == np.log(TINY)).all()


@pytest.mark.parametrize("n_bins,width", [(601, 51), (24, 9)])
def test_distinct_rows_rebuild_every_bins_weights(n_bins, width):
    """The kernel's compact tables: row[j] of each table holds bin j's weights, and no two
    rows are equal."""
    bands = TransitionBands.from_librosa_definition(n_bins, width, 0.01)
    same, switch, row = bands.distinct_rows
    assert same.shape == switch.shape == (int(row.max()) + 1, width) and len(row) == n_bins
    assert torch.equal(same[row], bands.same)
    assert torch.equal(switch[row], bands.switch)
    pairs = torch.cat([same, switch], 1)
    assert len(torch.unique(pairs, dim=0)) == len(pairs) < n_bins


def test_threshold_prior_and_width_are_librosas():
    thresholds, beta = threshold_prior()
    grid = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(thresholds, grid[1:])
    np.testing.assert_allclose(beta, np.diff(scipy.stats.beta.cdf(grid, 2, 18)), rtol=1e-12,
                               atol=1e-17)
    assert transition_width(35.92, HOP, SR) == 51


@pytest.mark.parametrize("preset_name", ["hifigan", "vocos"])
def test_transition_rates_librosa_refuses_are_refused_when_the_preset_loads(preset_name,
                                                                          tmp_path):
    """A max_transition_rate that moves pitch further in a frame than its bins reach: librosa.pyin
    raises, so loading the preset does, giving the highest rate it takes; at that rate both run."""
    preset = load_preset(preset_name)
    y = synth_utterance(0.3, preset.sample_rate, np.random.default_rng(0))
    file = tmp_path / "fast.yaml"
    file.write_text(f"base: {preset_name}\npitch: {{max_transition_rate: 1000}}\n")
    with pytest.raises(PresetError, match=r"librosa.pyin refuses it too\); .* at most") as error:
        load_preset(str(file))
    highest = float(str(error.value).rsplit(" ", 1)[1])
    for rate, librosa_takes in ((highest, True), (highest * 1.02, False)):
        file.write_text(f"base: {preset_name}\npitch: {{max_transition_rate: {rate}}}\n")
        try:
            load_preset(str(file))
            loads = True
        except PresetError:
            loads = False
        try:
            librosa.pyin(y, fmin=preset.pitch.fmin, fmax=preset.pitch.fmax,
                         sr=preset.sample_rate, frame_length=preset.pitch.frame_length,
                         hop_length=preset.hop_length, max_transition_rate=rate)
            runs = True
        except librosa.util.exceptions.ParameterError:
            runs = False
        assert loads == runs == librosa_takes, rate


def test_threshold_events_are_each_rows_distinct_indices_in_order():
    rng = np.random.default_rng(5)
    first_below = rng.integers(0, 101, (50, 9))
    first_below[3] = 100                                   # no trough below any threshold
    first_below[4] = 7                                     # one event
    events, n_events = threshold_events(torch.from_numpy(first_below))
    for row, (got, n) in enumerate(zip(events.numpy(), n_events.tolist())):
        expected = np.unique(first_below[row][first_below[row] < 100])
        assert n == len(expected)
        np.testing.assert_array_equal(got[:n], expected)
        assert (got[n:] == 100).all() and len(got) == n_events.max() + 1


def test_first_lowest_is_each_rows_argmin():
    """np.argmin's first minimum per row, over a row-major trough list with ties and rows
    without troughs."""
    rng = np.random.default_rng(6)
    mask = rng.random((60, 40)) < 0.3
    mask[[5, 17]] = False
    heights = np.round(rng.random((60, 40)), 1).astype(np.float32)       # many ties
    row, lag = np.nonzero(mask)
    got = first_lowest(torch.from_numpy(heights[row, lag]), torch.from_numpy(row), 60).numpy()
    expected = [np.flatnonzero(row == r)[np.argmin(heights[r, mask[r]])]
                for r in range(60) if mask[r].any()]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("batch,steps,rows", [(7, 30, 100), (7, 30, 30), (3, 250, 100),
                                              (2, 0, 10), (0, 5, 10)])
def test_frame_blocks_cover_every_frame_once(batch, steps, rows):
    covered = torch.zeros(batch, steps, dtype=torch.int)
    for block in frame_blocks(batch, steps, rows):
        assert covered[block].numel() <= rows
        covered[block] += 1
    assert (covered == 1).all()


@pytest.mark.parametrize("batch,steps", [(2, 0), (0, 5)])
def test_pyin_of_no_frames_is_empty(batch, steps):
    f0, voiced, prob = pyin(torch.zeros(batch, steps, N), torch.zeros(batch, dtype=torch.long),
                            SR, HOP, FMIN, FMAX)
    assert f0.shape == voiced.shape == prob.shape == (batch, steps)
    assert (f0.dtype, voiced.dtype, prob.dtype) == (torch.float32, torch.bool, torch.float32)


@pytest.mark.parametrize("width", [1, 7, 130])
def test_trough_weights_kernel_matches_torch(width):
    """The Triton kernel's sum (interpreted on the CPU) against torch's, on rows with no
    troughs, troughs below no threshold, shared first thresholds and up to 130 troughs."""
    rng = np.random.default_rng(width)
    rows = 40
    count = rng.integers(0, width + 1, rows)
    count[:2] = 0, width
    first_below = np.minimum(rng.integers(0, 140, (rows, width)), N_THRESHOLDS)
    first_below[3] = N_THRESHOLDS                                # below no threshold
    first_below[4] = rng.integers(20, 23, width)                 # many ties
    first_below[np.arange(width)[None] >= count[:, None]] = N_THRESHOLDS      # padding
    beta_cum = torch.from_numpy(np.concatenate([[0], np.cumsum(threshold_prior()[1])]))
    args = torch.from_numpy(first_below), torch.from_numpy(count)
    expected = trough_probabilities(*args, beta_cum, kernel=False)
    got = trough_probabilities(*(a.to(KERNEL_DEVICE) for a in args), beta_cum.to(KERNEL_DEVICE),
                               kernel=True).cpu()
    assert (expected > 0).sum() > rows // 4
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-13, atol=0)


def librosa_observations(cmnd: np.ndarray, shifts: np.ndarray, min_period: int,
                         n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """librosa.pyin's per-frame observation step (its __pyin_helper, written out one frame at
    a time): cmnd, shifts [K, T] -> (state probabilities [2 n_bins, T], voiced_prob [T])."""
    thresholds = np.linspace(0, 1, 101)
    beta = np.diff(scipy.stats.beta.cdf(thresholds, 2, 18))
    probs = np.zeros_like(cmnd)
    for i, frame in enumerate(cmnd.T):
        is_trough = librosa.util.localmin(frame)
        is_trough[0] = frame[0] < frame[1]
        (trough_index,) = np.nonzero(is_trough)
        if len(trough_index) == 0:
            continue
        below = np.less.outer(frame[trough_index], thresholds[1:])
        prior = scipy.stats.boltzmann.pmf(np.cumsum(below, axis=0) - 1, 2.0,
                                          np.count_nonzero(below, axis=0))
        prior[~below] = 0
        trough_probs = prior.dot(beta)
        global_min = np.argmin(frame[trough_index])
        trough_probs[global_min] += 0.01 * np.sum(beta[:np.count_nonzero(~below[global_min])])
        probs[trough_index, i] = trough_probs
    voiced = np.zeros((n_bins, cmnd.shape[1]))
    lag, frame_index = np.nonzero(probs)
    period = min_period + lag + shifts[lag, frame_index]
    bins = np.round(120 * np.log2(SR / period / FMIN)).astype(int)
    inside = bins < n_bins
    voiced[bins[inside], frame_index[inside]] = probs[lag[inside], frame_index[inside]]
    voiced_prob = np.clip(voiced.sum(axis=0), 0, 1)
    return np.vstack([voiced, np.tile((1 - voiced_prob) / n_bins, (n_bins, 1))]), voiced_prob


@pytest.mark.parametrize("kernel", [False, True], ids=["torch", "trough_kernel"])
def test_observation_probabilities_match_librosas_per_frame_definition(kernel, monkeypatch):
    """Speech, silence and noise frames (up to ~120 troughs), from librosa's own CMND; the
    trough sums by torch, and by the Triton kernel (interpreted on the CPU)."""
    monkeypatch.setattr(pyin_module, "trough_probabilities",
                        functools.partial(pyin_module.trough_probabilities, kernel=kernel))
    rng = np.random.default_rng(3)
    y = np.concatenate([synth_utterance(1.0, SR, rng), np.zeros(SR // 4),
                        0.1 * rng.standard_normal(SR // 2)]).astype(np.float32)
    frames = librosa.util.frame(np.pad(y, N // 2), frame_length=N, hop_length=HOP)
    min_period, max_period = int(np.floor(SR / FMAX)), min(int(np.ceil(SR / FMIN)), N - 1)
    cmnd = librosa.core.pitch._cumulative_mean_normalized_difference(frames, min_period,
                                                                     max_period)
    shifts = librosa.core.pitch._parabolic_interpolation(cmnd)
    n_bins = pitch_bin_count(FMIN, FMAX)
    expected, expected_prob = librosa_observations(cmnd, shifts, min_period, n_bins)
    device = KERNEL_DEVICE if kernel else "cpu"
    log_obs = torch.empty(cmnd.shape[1], 2 * n_bins, dtype=torch.float64, device=device)
    voiced_prob = log_observation_probabilities(
        torch.from_numpy(np.ascontiguousarray(cmnd.T)).to(device), SR, FMIN, min_period, n_bins,
        0.01, out=log_obs)
    log_obs, voiced_prob = log_obs.cpu(), voiced_prob.cpu()
    assert librosa.util.localmin(cmnd, axis=0).sum(axis=0).max() > 60   # noise frames
    np.testing.assert_allclose(log_obs.numpy(), np.log(expected.T + TINY), rtol=1e-12)
    np.testing.assert_allclose(voiced_prob.numpy(), expected_prob, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_bins,width,steps", [(37, 11, 30), (601, 51, 12)])
def test_torch_viterbi_matches_librosa(n_bins, width, steps):
    probs = random_problems(n_bins, steps, 4, seed=n_bins)
    lengths = torch.tensor([steps, steps - 5, steps, 1])
    ours = viterbi_torch(torch.from_numpy(np.log(probs.transpose(0, 2, 1) + TINY)), lengths,
                         TransitionBands.from_librosa_definition(n_bins, width, 0.01)).numpy()
    transition = librosa_transition(n_bins, width)
    for b, n in enumerate(lengths.tolist()):
        np.testing.assert_array_equal(ours[b, :n], librosa_viterbi(probs[b, :, :n], transition))
        assert not ours[b, n:].any()


def pyin_like_problems(n_bins: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """[B, 2n, T] as pyin makes them: candidates in a few voiced bins a frame (around a
    wandering pitch, its octaves and stray bins), the unvoiced bins sharing what is left;
    frames without candidates, and frames whose candidates take everything (unvoiced 0)."""
    rng = np.random.default_rng(seed)
    probs = np.zeros((batch, 2 * n_bins, steps))
    octave = min(12 * BINS_PER_SEMITONE, n_bins // 3)
    for b in range(batch):
        pitch = rng.integers(octave, n_bins - octave)
        for t in range(steps):
            pitch = np.clip(pitch + rng.integers(-8, 9), 0, n_bins - 1)
            near = pitch + rng.integers(-4, 5, 3) + rng.choice([0, -octave, octave], 3)
            bins = np.clip(np.r_[near, rng.integers(0, n_bins, rng.integers(0, 4))], 0,
                           n_bins - 1)
            mass = 0.0 if t % 7 == 3 else 1.0 if t % 5 == 2 else rng.random()
            probs[b, bins, t] = rng.dirichlet(np.ones(len(bins))) * mass
            probs[b, n_bins:, t] = (1 - probs[b, :n_bins, t].sum()) / n_bins
    return np.clip(probs, 0, 1)


def librosa_forward_values(probs: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """probs [S, T] -> the state values [T, S] of librosa.sequence.viterbi's forward pass
    (its _viterbi, which keeps them to itself), with pyin's uniform start."""
    log_prob, log_trans = np.log(probs.T + TINY), np.log(transition + TINY)
    value = np.empty_like(log_prob)
    value[0] = log_prob[0] + np.log(np.full(len(transition), 1 / len(transition)) + TINY)
    for t in range(1, len(value)):
        value[t] = log_prob[t] + (value[t - 1] + log_trans.T).max(axis=1)
    return value


@pytest.mark.parametrize("problems", [pyin_like_problems, random_problems])
@pytest.mark.parametrize("n_bins,width,steps", [(601, 51, 40), (37, 11, 40)])
@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]],
                         ids=["descending", "ascending", "unordered"])
def test_torch_forward_values_are_librosas_bit_for_bit(problems, n_bins, width, steps, order):
    """The forward pass skips voiced bins that cannot beat any state's best (most of them on
    pyin's observations): every value, at every state, must still be librosa's. Rows in
    length order are decoded in place where the caller allows (overwrite), others in a copy."""
    probs = problems(n_bins, steps, 4, seed=n_bins)
    lengths = torch.tensor([steps, steps - 9, steps - 20, 1])[order]
    log_obs = torch.from_numpy(np.log(probs.transpose(0, 2, 1) + TINY))[order]
    probs = probs[order]
    bands = TransitionBands.from_librosa_definition(n_bins, width, 0.01)
    states = viterbi_torch(log_obs, lengths, bands).numpy()
    np.testing.assert_array_equal(viterbi_torch(log_obs.clone(), lengths, bands, overwrite=True),
                                  states)
    transition = librosa_transition(n_bins, width)
    for b, n in enumerate(lengths.tolist()):
        np.testing.assert_array_equal(states[b, :n], librosa_viterbi(probs[b, :, :n], transition))
    if order == [2, 0, 3, 1]:
        with pytest.raises(ValueError, match="length order"):
            forward_values(log_obs, lengths, bands)
    else:
        values = forward_values(log_obs.clone(), lengths, bands).numpy()
        for b, n in enumerate(lengths.tolist()):
            np.testing.assert_array_equal(values[b, :n],
                                          librosa_forward_values(probs[b, :, :n], transition))


@pytest.mark.parametrize("n_bins,width,steps,lengths,unroll", [
    (24, 9, 20, [20, 11, 19, 1], 1),
    (24, 9, 20, [20, 11, 19, 1], 4),       # 9 offsets in rounds of 4: 3 padding offsets
    (601, 51, 6, [6, 4, 5, 2], 1),         # pyin's own size: 601 bins in a 1024-wide block
    (601, 51, 6, [6, 4, 5, 2], 3),
    (601, 51, 6, [6, 4, 5, 2], 17),        # 3 rounds of 17 (the default is 1)
])
def test_triton_kernel_matches_torch_and_librosa(n_bins, width, steps, lengths, unroll):
    probs = random_problems(n_bins, steps, 4, seed=7)
    lengths = torch.tensor(lengths)
    bands = TransitionBands.from_librosa_definition(n_bins, width, 0.01)
    log_obs = torch.from_numpy(np.log(probs.transpose(0, 2, 1) + TINY))
    kernel = viterbi_triton(log_obs.to(KERNEL_DEVICE), lengths.to(KERNEL_DEVICE),
                            bands.to(torch.device(KERNEL_DEVICE)), unroll=unroll).cpu().numpy()
    np.testing.assert_array_equal(kernel, viterbi_torch(log_obs, lengths, bands).numpy())
    transition = librosa_transition(n_bins, width)
    for b, n in enumerate(lengths.tolist()):
        np.testing.assert_array_equal(kernel[b, :n], librosa_viterbi(probs[b, :, :n], transition))


@pytest.mark.parametrize("arch", [80, 90])     # A100; H100 and H200
def test_triton_kernel_compiles_to_cuda_machine_code(arch, tmp_path):
    """The interpreter runs the kernel as Python; this runs the GPU compiler on it (Triton's
    LLVM and ptxas, no GPU needed) at pyin's default size and settings, outside the
    interpreter: no spills, and a band loop of little but its loads, float64 adds, compares
    and selects (4, 4, 4 and 12 instructions per state and offset); the trough-weights kernel
    compiles without spills too."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(BENCHMARKS / "kernel_code.py"), "--arch",
                             str(arch), "--settings", f"{UNROLL}x{NUM_WARPS}", "--json"],
                            capture_output=True, text=True,
                            env={**env, "TRITON_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    code = report[f"{UNROLL}x{NUM_WARPS}"]
    assert code["ptx_target"] in (f"sm_{arch}", f"sm_{arch}a")       # 90a: Hopper's features
    assert code["stack_bytes"] == 0
    assert 24 <= code["band_loop_per_state_and_offset"] < 30, code
    troughs = report["trough_weights"]
    assert len(troughs) == 3 and all(r["stack_bytes"] == 0 for r in troughs.values()), troughs


def librosa_grid(y: np.ndarray, frame_length: int = N, hop: int = HOP) -> torch.Tensor:
    """librosa.pyin's frames (center=True, zero padding): [T, frame_length] centred at
    t * hop."""
    return torch.from_numpy(np.pad(y, frame_length // 2)).unfold(0, frame_length, hop)


@functools.cache
def librosa_pyin_results() -> list[tuple[np.ndarray, ...]]:
    """librosa.pyin's (f0, voiced, voiced_prob) for each parity clip."""
    return [librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=SR, frame_length=N, hop_length=HOP)
            for y in parity_clips()]


def parity_clips() -> list[np.ndarray]:
    """20 speech-like clips (voiced, unvoiced and silent stretches) at 22.05 kHz, float32 as
    librosa.load returns them; F0 from about 85 to 250 Hz."""
    return [synth_utterance(1.5 + 0.05 * k, SR, np.random.default_rng(500 + k)).astype(np.float32)
            for k in range(20)]


@pytest.mark.parametrize("rows_per_chunk", [None, 100], ids=["default_blocks", "part_blocks"])
def test_pyin_matches_librosa_pyin_on_its_own_frames(device, rows_per_chunk, monkeypatch):
    """Also with blocks of 100 frames, shorter than an utterance (frame_blocks' other case)."""
    if rows_per_chunk:
        monkeypatch.setitem(pyin_module.ROWS_PER_CHUNK, torch.device(device).type, rows_per_chunk)
    clips = parity_clips()
    frames = torch.nn.utils.rnn.pad_sequence([librosa_grid(y) for y in clips], batch_first=True)
    counts = torch.tensor([1 + len(y) // HOP for y in clips])
    assert rows_per_chunk is None or counts.min() > rows_per_chunk
    f0, voiced, prob = (x.cpu() for x in pyin(frames.to(device), counts.to(device), SR, HOP,
                                              FMIN, FMAX))
    same_voicing, close, exact, total, both_voiced, prob_close = 0, 0, 0, 0, 0, 0
    for b, (ref_f0, ref_voiced, ref_prob) in enumerate(librosa_pyin_results()):
        n = len(ref_f0)
        assert n == int(counts[b])
        ours_f0, ours_voiced = f0[b, :n].numpy(), voiced[b, :n].numpy()
        both = ours_voiced & ref_voiced
        cents = 1200 * np.abs(np.log2(ours_f0[both] / ref_f0[both]))
        same_voicing += (ours_voiced == ref_voiced).sum()
        close += (cents <= 10 + 1e-3).sum()
        exact += ((ours_voiced == ref_voiced) & (~ref_voiced | (
            np.nan_to_num(ref_f0).astype(np.float32) == ours_f0))).sum()
        total += n
        both_voiced += both.sum()
        prob_close += (np.abs(prob[b, :n].numpy() - ref_prob) <= 1e-6).sum()
        assert not ours_f0[~ours_voiced].any()
    print(f"pyin parity over {total} frames: voicing {same_voicing / total:.4%}, within 10 cents "
          f"{close / both_voiced:.4%}, identical {exact / total:.4%}, voiced_prob within 1e-6 "
          f"{prob_close / total:.4%}")
    assert both_voiced > 0.3 * total
    assert same_voicing / total >= 0.99
    assert close / both_voiced >= 0.99
    assert prob_close / total >= 0.99


@pytest.mark.parametrize("rate,frame_length,hop", [(SR, N, HOP), (24000, N, HOP),
                                                   (44100, 2 * N, 2 * HOP)])
def test_pyin_is_librosa_pyin_frame_for_frame_on_recorded_speech(rate, frame_length, hop, device):
    """Two recordings (a real voice, onsets, near-silence) in one batch, at the presets' rates
    and at 44.1 kHz: the same voicing and f0 as librosa.pyin on every frame. voiced_prob as in
    the parity test: in near-silent frames the difference function is mostly float32 rounding,
    which differs between FFT sizes and libraries, so a trough can get no_trough_prob (0.01) in
    one and not the other (a frame of 16 kHz audio did)."""
    clips = list(recorded_speech(rate).values())
    frames = torch.nn.utils.rnn.pad_sequence([librosa_grid(y, frame_length, hop) for y in clips],
                                             batch_first=True)
    counts = torch.tensor([1 + len(y) // hop for y in clips])
    f0, voiced, prob = (x.cpu() for x in pyin(frames.to(device), counts.to(device), rate, hop,
                                              FMIN, FMAX))
    prob_close = total = 0
    for b, y in enumerate(clips):
        ref_f0, ref_voiced, ref_prob = librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=rate,
                                                    frame_length=frame_length, hop_length=hop)
        n = len(ref_f0)
        assert n == int(counts[b]) and ref_voiced.mean() > 0.3
        np.testing.assert_array_equal(voiced[b, :n].numpy(), ref_voiced)
        np.testing.assert_array_equal(f0[b, :n].numpy(), np.nan_to_num(ref_f0).astype(np.float32))
        prob_close += int((np.abs(prob[b, :n].numpy() - ref_prob) <= 1e-6).sum())
        total += n
    assert prob_close / total >= 0.99


def test_job_pitch_is_pyin_on_the_mel_frame_centres(tmp_path, device):
    """The default preset's f0 at mel frame t equals librosa.pyin's on the audio advanced by
    half a hop (its frame t is centred at sample t * hop + hop / 2 of the original)."""
    preset = load_preset("hifigan")
    assert preset.pitch.method == "pyin"
    y = synth_utterance(2.5, SR, np.random.default_rng(42))
    path = tmp_path / "a.wav"
    soundfile.write(path, y, SR, subtype="PCM_16")
    audio = load_for_hifigan(path)[0].float()
    features = {name: x.cpu() for name, x in extract_features(
        audio[None].to(device), torch.tensor([len(audio)], device=device), preset).items()}
    ref_f0, ref_voiced, _ = librosa.pyin(audio[HOP // 2:].numpy(), fmin=FMIN, fmax=FMAX, sr=SR,
                                         frame_length=N, hop_length=HOP)
    frames = len(audio) // HOP
    assert features["f0"].shape == (1, frames) == features["voiced_prob"].shape
    inner = slice(3, frames - 3)   # the edges see different zero padding
    voiced = features["voiced"][0].numpy()[inner]
    assert (voiced == ref_voiced[inner]).mean() >= 0.99
    both = voiced & ref_voiced[inner]
    cents = 1200 * np.abs(np.log2(features["f0"][0].numpy()[inner][both] / ref_f0[inner][both]))
    assert both.sum() > 0.3 * frames and (cents <= 10 + 1e-3).mean() >= 0.99


def test_yin_remains_an_option(tmp_path):
    """A preset file with pitch.method yin: voiced_prob is the voicing as 0/1."""
    text = (Path(str(resources.files("extract.configs"))) / "hifigan.yaml").read_text()
    path = tmp_path / "fast.yaml"
    path.write_text(text.replace("method: pyin", "method: yin"))
    preset = load_preset(str(path))
    assert preset.pitch.method == "yin"
    audio = torch.from_numpy(synth_utterance(1.5, SR, np.random.default_rng(1)))[None].float()
    features = extract_features(audio, torch.tensor([audio.shape[1]]), preset)
    assert features["voiced"].any()
    assert torch.equal(features["voiced_prob"], features["voiced"].float())
