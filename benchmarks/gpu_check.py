"""One prepared run for a lent GPU machine: checks the CUDA path against the CPU path and
measures throughput. Writes OUT_DIR/gpu_check.json after every step, with the step's seconds
and, on CUDA, the GPU memory torch allocated at its peak (a failed step records its traceback and
the next one runs), and prints it at the end.

    python benchmarks/gpu_check.py OUT_DIR [--copies 20] [--pyin-utterances 1000]
                                           [--librosa-files 100] [--limit N]
                                           [--long-files 8] [--long-seconds 600]
                                           [--bound-files 256] [--bound-batch-size N]
                                           [--oom-memory-gb 6] [--steps demo ... held_memory]

1. the demo corpus on --device cpu and --device cuda: features must agree (tolerances below),
   also under coqui-fastpitch (silence trimming: same spans, so same frame counts) and espnet
   (WORLD's dio);
2. torchrun with two ranks sharing the GPU against step 1's single-process store (gloo, other
   batches: which arrays come out identical, and how close the rest are);
3. a larger corpus (the demo's files repeated --copies times) on cuda, timed twice per batch
   size, with the job's time by stage (decode, resample, spectrogram, pitch, to host, write);
   then whole torchrun commands on it with 1 rank and with 2 ranks sharing the GPU;
4. pyin alone on --pyin-utterances utterances in one batch: times real time (also per stage
   and at other chunk sizes, with a profile in OUT_DIR/pyin_profile.txt; the per-frame work's
   bytes by benchmarks/pyin_traffic.py's model, and the rate they imply), the Triton decoder
   at several unroll and num_warps settings and with a weight row per bin, and against the
   torch one on the GPU; the per-frame work with its trough sums by the Triton kernel (at
   several block sizes) and by torch;
5. librosa mel + pyin with one single-threaded process per core on the first --librosa-files
   files (the whole demo corpus by default);
6. the demo corpus plus --long-files files of --long-seconds each on cuda and on the CPU: the
   batches of long files are smaller (a new decoding pipeline at each size change), the
   features must agree, and the step's peak GPU memory shows the bound;
7. the demo corpus plus --bound-files files of 30 s (LONG_UTTERANCE_S) on cuda alone: at the
   default batch size (or --bound-batch-size), the largest padded batch the plan allows (256 x
   30 s), and its peak GPU memory (run this step alone for the device's memory in use after it,
   which includes DALI's pools and the CUDA context);
8. that corpus on cuda with torch's allocator held to --oom-memory-gb, from the default batch
   size: each run that runs out of memory must name a smaller --batch-size, and rerunning with
   --resume and it must end in a store that agrees with an unlimited run's;
9. the same with all but --oom-memory-gb of the GPU's free memory held by a tensor, as another
   process would hold it, so that DALI's allocations fail too (its unused pool memory released
   first): which errors came, and the same store in the end.

Without CUDA it runs every step on the CPU instead (the Triton kernel interpreted), to try the
script itself before spending GPU time (tests/test_gpu_check.py does, at a small size).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

if not torch.cuda.is_available():   # a trial run on the CPU: Triton kernels interpreted
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import zarr  # noqa: E402

from extract.config import C2_HZ, C7_HZ  # noqa: E402
from extract.demo import write_demo_corpus  # noqa: E402
from extract.job import run_job  # noqa: E402
from extract.loader import FeatureStore  # noqa: E402
from extract.plan import LONG_UTTERANCE_S  # noqa: E402
from extract.store.layout import FRAME_ARRAYS  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from job_vs_librosa import time_librosa  # noqa: E402

MEL_ATOL = 1e-3        # log domain; cuFFT and the CPU FFT round differently
RATE, HOP, FMIN, FMAX = 22050, 256, C2_HZ, C7_HZ    # pyin at FastPitch's settings
VOICING_AGREEMENT = 0.99


def agrees(comparison: dict) -> bool:
    """Whether `compare`'s figures are within the documented tolerances."""
    return (comparison["mel_max_abs_diff"] <= MEL_ATOL
            and comparison["voicing_agreement"] >= VOICING_AGREEMENT)


def compare(cpu: FeatureStore, gpu: FeatureStore) -> dict:
    mel_diff, voiced_same, cents = 0.0, [], []
    for i in range(len(cpu)):
        a, b = cpu[i], gpu[i]
        mel_diff = max(mel_diff, float((a["mel"] - b["mel"]).abs().max()))
        voiced_same.append((a["voiced"] == b["voiced"]).numpy())
        both = (a["voiced"] & b["voiced"]).numpy()
        cents.append(1200 * np.abs(np.log2(a["f0"].numpy()[both] / b["f0"].numpy()[both])))
    cents = np.concatenate(cents)
    return {"mel_max_abs_diff": mel_diff,
            "voicing_agreement": float(np.concatenate(voiced_same).mean()),
            "f0_cents_p99": float(np.percentile(cents, 99)), "f0_cents_max": float(cents.max()),
            "stats_f0_mean": [cpu.stats["f0_mean"], gpu.stats["f0_mean"]]}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, function, *args, **kwargs):
    """(function(*args, **kwargs), seconds), the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    synchronize(device)
    return result, time.perf_counter() - start


def pyin_batch(device: str, utterances: int, out: Path, seconds: float = 4.0) -> dict:
    """pyin on `utterances` speech-like clips at once, its two stages timed apart and profiled
    (OUT_DIR/pyin_profile.txt); Triton vs torch decoding on `device`."""
    from extract.demo import synth_utterance
    from extract.features.pyin import (observations, pitch_bin_count, pyin, transition_bands,
                                       transition_width)
    from extract.features.viterbi import viterbi, viterbi_torch
    from extract.kernels.viterbi import viterbi_triton
    from pyin_traffic import count_traffic

    clips = [synth_utterance(seconds, RATE, np.random.default_rng(k)) for k in range(16)]
    audio = torch.from_numpy(np.stack(clips * (utterances // 16 + 1))[:utterances]).float()
    frames = torch.nn.functional.pad(audio, (512, 512)).to(device).unfold(1, 1024, HOP)
    counts = torch.full((utterances,), frames.shape[1], device=device)
    result = {"utterances": utterances, "audio_s": utterances * seconds}
    for attempt in range(2):
        (_, voiced, _), wall = timed(device, pyin, frames, counts, RATE, HOP, FMIN, FMAX)
        result[f"xrt_run{attempt}"] = result["audio_s"] / wall
    bands = transition_bands(pitch_bin_count(FMIN, FMAX), transition_width(35.92, HOP, RATE),
                             0.01).to(torch.device(device))
    (log_obs, _), result["observations_s"] = timed(device, observations, frames, RATE, FMIN,
                                                   FMAX, 0.01)
    _, result["viterbi_s"] = timed(device, viterbi, log_obs, counts, bands)
    # pyin_traffic's model of the per-frame work (its 16 distinct clips) against this timing
    sample = frames[:16]
    moved = sum(count_traffic(sample).values()) / (sample.shape[0] * sample.shape[1])
    result["traffic_kb_per_frame"] = moved / 1e3
    result["observations_tb_per_s"] = (moved * frames.shape[0] * frames.shape[1]
                                       / result["observations_s"] / 1e12)
    # the interpreter is slow: on the CPU the sweep decodes 3 frames of one utterance
    sweep = (log_obs, counts) if device == "cuda" else (log_obs[:1, :3], counts[:1].clamp(max=3))
    result["viterbi_kernel_sweep"] = viterbi_sweep(device, *sweep, bands)
    result["trough_sums"] = trough_sums_check(
        device, frames if device == "cuda" else frames[:2, :16], bands)
    result["chunk_sweep_xrt"] = chunk_sweep(device, frames, counts, result["audio_s"])
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch.profiler.profile(activities=activities) as profile:
        pyin(frames, counts, RATE, HOP, FMIN, FMAX)
        synchronize(device)
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    (out / "pyin_profile.txt").write_text(profile.key_averages().table(sort_by=sort,
                                                                       row_limit=40))
    batch, steps = (64, 300) if device == "cuda" else (3, 4)     # the interpreter is slow
    log_obs = torch.randn(batch, steps, 1202, dtype=torch.float64, device=device)
    lengths = torch.randint(1, steps + 1, (batch,), device=device)
    result["triton_equals_torch"] = bool(torch.equal(viterbi_triton(log_obs, lengths, bands),
                                                     viterbi_torch(log_obs, lengths, bands)))
    _, cpu_voiced, _ = pyin(frames[:16].cpu(), counts[:16].cpu(), RATE, HOP, FMIN, FMAX)
    result["voicing_agreement_cpu_gpu"] = float((cpu_voiced == voiced[:16].cpu()).float().mean())
    return result


def chunk_sweep(device: str, frames: torch.Tensor, counts: torch.Tensor,
                audio_s: float) -> dict:
    """pyin's times real time at other numbers of frames per chunk of per-frame work."""
    from extract.features import pyin as module

    saved = module.ROWS_PER_CHUNK[device]
    result = {}
    try:
        for chunk in (8192, 131072, 262144):
            module.ROWS_PER_CHUNK[device] = chunk
            _, wall = timed(device, module.pyin, frames, counts, RATE, HOP, FMIN, FMAX)
            result[str(chunk)] = audio_s / wall
    finally:
        module.ROWS_PER_CHUNK[device] = saved
    return result


def trough_sums_check(device: str, frames: torch.Tensor, bands) -> dict:
    """The per-frame work with the trough sums by the Triton kernel (the default on CUDA; its
    block sizes swept) and by torch (16384 rows a group), timed after a compiling run; how far
    apart their log state probabilities are, and whether they decode the same states."""
    from extract.features import pyin as module
    from extract.features.viterbi import viterbi
    from extract.kernels import trough_weights

    original, group = module.trough_probabilities, module.ROWS_PER_GROUP
    saved = trough_weights.ELEMENTS, trough_weights.NUM_WARPS
    counts = torch.full((frames.shape[0],), frames.shape[1], device=device)
    result, outputs = {}, {}
    try:
        module.ROWS_PER_GROUP = 16384
        for name, elements, warps, kernel in (("torch", 0, 0, False),
                                              ("kernel_1024x4", 1024, 4, True),
                                              ("kernel_2048x4", 2048, 4, True),
                                              ("kernel_4096x8", 4096, 8, True),
                                              ("kernel_2048x8", 2048, 8, True)):
            module.trough_probabilities = functools.partial(original, kernel=kernel)
            trough_weights.ELEMENTS = elements or saved[0]
            trough_weights.NUM_WARPS = warps or saved[1]
            module.observations(frames, RATE, FMIN, FMAX, 0.01)
            (outputs[name], _), result[f"{name}_s"] = timed(device, module.observations, frames,
                                                          RATE, FMIN, FMAX, 0.01)
    finally:
        module.trough_probabilities, module.ROWS_PER_GROUP = original, group
        trough_weights.ELEMENTS, trough_weights.NUM_WARPS = saved
    reference = outputs.pop("torch")
    result["log_obs_max_abs_diff"] = max(float((o - reference).abs().max())
                                         for o in outputs.values())
    states = viterbi(reference, counts, bands)
    result["same_states"] = all(torch.equal(viterbi(o, counts, bands), states)
                                for o in outputs.values())
    return result


def viterbi_sweep(device: str, log_obs: torch.Tensor, counts: torch.Tensor, bands) -> dict:
    """The Triton decoder's seconds at several (unroll, num_warps), the default first, and
    reading a weight table with every bin its own row instead of the distinct bins', each after
    a compiling run, and whether each decodes the states of the default."""
    from extract.kernels.viterbi import NUM_WARPS, UNROLL, viterbi_triton
    from kernel_code import SETTINGS

    states = viterbi_triton(log_obs, counts, bands)
    settings = {f"unroll{unroll}_warps{warps}": {"unroll": unroll, "num_warps": warps}
                for unroll, warps in SETTINGS}
    settings[f"full_table_unroll{UNROLL}_warps{NUM_WARPS}"] = {"distinct": False}
    result = {}
    for name, options in settings.items():
        try:
            viterbi_triton(log_obs, counts, bands, **options)
            decoded, seconds = timed(device, viterbi_triton, log_obs, counts, bands, **options)
            result[name] = {"seconds": seconds, "same_states": bool(torch.equal(decoded, states))}
        except Exception as e:        # e.g. out of resources: the other sizes still count
            result[name] = {"error": str(e)[:300]}
    return result


def repeated_corpus(demo: Path, folder: Path, copies: int) -> Path:
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    lines = (demo / "metadata.csv").read_text().splitlines()
    out = []
    for c in range(copies):
        for line in lines:
            name, rest = line.split("|", 1)
            new = f"c{c}_{name}"
            os.link(demo / "wavs" / name, folder / "wavs" / new)
            out.append(f"{new}|{rest}")
    (folder / "metadata.csv").write_text("\n".join(out) + "\n")
    return folder


def demo_agreement(demo: Path, work: Path, device: str, limit: int | None) -> dict:
    cpu = run_job(demo, work / "cpu.zarr", device="cpu", limit=limit, show_progress=False)
    gpu = run_job(demo, work / "gpu.zarr", device=device, limit=limit, show_progress=False)
    agreement = compare(FeatureStore(cpu.path), FeatureStore(gpu.path))
    return {"cpu_xrt": cpu.times_real_time, "gpu_xrt": gpu.times_real_time,
            "cpu_vs_gpu": agreement,
            "agreement_ok": agrees(agreement)}


def preset_agreement(demo: Path, work: Path, device: str, preset: str,
                     limit: int | None) -> dict:
    stores = [FeatureStore(run_job(demo, work / f"{preset}-{side}.zarr", preset=preset,
                                   device=kind, limit=limit, show_progress=False).path)
              for side, kind in (("cpu", "cpu"), ("gpu", device))]
    result = {"same_spans": bool(np.array_equal(stores[0].spans, stores[1].spans)),
              "same_frame_counts": bool(np.array_equal(stores[0].lengths, stores[1].lengths))}
    if result["same_frame_counts"]:
        result["cpu_vs_gpu"] = compare(*stores)
    return result


def torchrun(corpus: Path, out: Path, work: Path, device: str, ranks: int,
             options: list[str]) -> float:
    """Seconds for `torchrun --nproc-per-node=ranks -m extract run corpus out`, start-up
    included."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={ranks}", f"--log-dir={work / 'torchrun-logs'}", "-m",
               "extract", "run", str(corpus), str(out), "--device", device, "--quiet", *options]
    start = time.perf_counter()
    job = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if job.returncode != 0:
        raise RuntimeError(job.stderr[-3000:])
    return time.perf_counter() - start


def torchrun_agreement(demo: Path, work: Path, device: str, limit: int | None) -> dict:
    """Two ranks on one device against the single process's store of step "demo"."""
    out = work / "torchrun.zarr"
    wall = torchrun(demo, out, work, device, 2, ["--limit", str(limit)] if limit else [])
    arrays = [zarr.open_group(str(path), mode="r") for path in (work / "gpu.zarr", out)]
    single, ranks = FeatureStore(work / "gpu.zarr"), FeatureStore(out)
    return {"wall_s": wall, "ranks": ranks.attrs["run"]["ranks"],
            "identical": {name: bool(np.array_equal(arrays[0][name][:], arrays[1][name][:]))
                          for name in FRAME_ARRAYS},
            "vs_single_process": compare(single, ranks)}


def big_corpus_throughput(demo: Path, work: Path, device: str, copies: int,
                          limit: int | None) -> dict:
    big = repeated_corpus(demo, work / "big", copies)
    result = {}
    for batch_size in (256, 512):
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            r = run_job(big, work / "big.zarr", device=device, batch_size=batch_size,
                        limit=limit and limit * copies, overwrite=True, show_progress=False)
            runs.append({"xrt": r.times_real_time, "wall_s": time.perf_counter() - start,
                         "audio_s": r.audio_s, "stage_s": r.stage_s})
        result[f"batch{batch_size}"] = runs
    # whole commands, start-up included: 1 rank, then 2 sharing the device
    options = ["--batch-size", "256", "--overwrite"] + (["--limit", str(limit * copies)]
                                                        if limit else [])
    for ranks in (1, 2):
        wall = torchrun(big, work / "big.zarr", work, device, ranks, options)
        result[f"torchrun_{ranks}_ranks"] = {"wall_s": wall, "xrt": runs[0]["audio_s"] / wall,
                                             "per_rank_xrt": runs[0]["audio_s"] / wall / ranks}
    return result


def long_files(demo: Path, work: Path, device: str, files: int, seconds: float,
               limit: int | None, name: str = "long", against_cpu: bool = True,
               batch_size: int | None = None) -> dict:
    """The demo corpus plus `files` files of `seconds` each (long_corpus) on `device`, then,
    where `against_cpu`, on the CPU. Batches of files over 30 s hold fewer utterances, each size
    change on a new decoding pipeline: the features must still agree, and the peak GPU memory
    shows the bound."""
    corpus, limit = long_corpus(demo, work / name, files, seconds, limit)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    on_device = run_job(corpus, work / f"{name}-device.zarr", device=device, limit=limit,
                        batch_size=batch_size, show_progress=False)
    result = {"audio_s": on_device.audio_s, "xrt": on_device.times_real_time,
              "batch_size": FeatureStore(on_device.path).attrs["run"]["batch_size"],
              "stage_s": on_device.stage_s}
    if device == "cuda":
        free, total = torch.cuda.mem_get_info()
        result.update(peak_gpu_mem_gb=torch.cuda.max_memory_allocated() / 1e9,
                      peak_gpu_reserved_gb=torch.cuda.max_memory_reserved() / 1e9,
                      gpu_used_after_gb=(total - free) / 1e9)
    if not against_cpu:
        return result
    cpu = run_job(corpus, work / f"{name}-cpu.zarr", device="cpu", limit=limit,
                  show_progress=False)
    result["cpu_xrt"] = cpu.times_real_time
    result["cpu_vs_gpu"] = compare(FeatureStore(cpu.path), FeatureStore(on_device.path))
    result["agreement_ok"] = agrees(result["cpu_vs_gpu"])
    return result


def long_corpus(demo: Path, folder: Path, files: int, seconds: float,
                limit: int | None) -> tuple[Path, int | None]:
    """The demo corpus with `files` files of `seconds` each first (a synthesised 30 s clip
    repeated), and the --limit that takes them and `limit` demo files (None: all)."""
    from extract.demo import synth_utterance
    from extract.input.audio import write_wav

    corpus = repeated_corpus(demo, folder, 1)
    clip = synth_utterance(30.0, RATE, np.random.default_rng(7))
    lines = []
    for k in range(files):
        y = np.tile(clip, int(np.ceil(seconds / 30)))[: int(seconds * RATE)] * (0.5 + 0.05 * k)
        write_wav(corpus / "wavs" / f"long{k}.wav", y, RATE)
        lines.append(f"long{k}|Long file {k}.|")
    metadata = corpus / "metadata.csv"
    metadata.write_text("\n".join(lines) + "\n" + metadata.read_text())
    return corpus, limit and files + limit


def out_of_memory(demo: Path, work: Path, device: str, files: int, limit: int | None,
                  memory_gb: float, held_by_tensor: bool = False) -> dict:
    """Steps 8 and 9: the runs, each batch size and error, and the final store against an
    unlimited run's."""
    if device != "cuda":
        return {"skipped": "needs CUDA"}
    name = "held" if held_by_tensor else "oom"
    corpus, limit = long_corpus(demo, work / name, files, LONG_UTTERANCE_S, limit)
    tries, batch_size, resume = [], None, False
    with gpu_memory_left(memory_gb, held_by_tensor):
        while len(tries) < 6:
            try:
                run_job(corpus, work / f"{name}.zarr", device=device, limit=limit,
                        batch_size=batch_size, resume=resume, show_progress=False)
                tries.append({"batch_size": batch_size, "ok": True})
                break
            except RuntimeError as e:
                tries.append({"batch_size": batch_size, "error": str(e)[:400]})
                advice = re.search(r"--resume --batch-size (\d+)$", str(e))
                if not advice:
                    break
                batch_size, resume = int(advice.group(1)), True
            torch.cuda.empty_cache()
    result = {"memory_gb": memory_gb, "tries": tries}
    if tries[-1].get("ok"):
        reference = run_job(corpus, work / f"{name}-reference.zarr", device=device, limit=limit,
                            show_progress=False)
        result["vs_unlimited"] = compare(FeatureStore(reference.path),
                                         FeatureStore(work / f"{name}.zarr"))
        result["agreement_ok"] = agrees(result["vs_unlimited"])
    return result


@contextlib.contextmanager
def gpu_memory_left(memory_gb: float, held_by_tensor: bool) -> Iterator[None]:
    """About `memory_gb` of GPU memory for the job, once DALI's and torch's unused pool memory
    is released: torch's allocator capped (DALI's is not), or the rest of the free memory held
    by a tensor (so that both must allocate within it)."""
    from nvidia.dali.backend import ReleaseUnusedMemory

    ReleaseUnusedMemory()
    torch.cuda.empty_cache()
    held = None
    if held_by_tensor:
        free, _ = torch.cuda.mem_get_info()
        held = torch.empty(max(0, int(free - memory_gb * 1e9)), dtype=torch.uint8, device="cuda")
    else:
        torch.cuda.set_per_process_memory_fraction(
            memory_gb * 1e9 / torch.cuda.get_device_properties(0).total_memory)
    try:
        yield
    finally:
        del held
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


def librosa_baseline(demo: Path, files: int) -> dict:
    paths = sorted(str(p) for p in (demo / "wavs").glob("*.wav"))[:files]
    audio_s, wall = time_librosa(paths, os.cpu_count())
    return {"files": len(paths), "workers": os.cpu_count(), "xrt": audio_s / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--pyin-utterances", type=int, default=1000)
    parser.add_argument("--librosa-files", type=int, default=100)
    parser.add_argument("--limit", type=int, help="demo utterances to use (default: all)")
    parser.add_argument("--long-files", type=int, default=8)
    parser.add_argument("--long-seconds", type=float, default=600)
    parser.add_argument("--bound-files", type=int, default=256)
    parser.add_argument("--bound-batch-size", type=int, help="default: the job's")
    parser.add_argument("--oom-memory-gb", type=float, default=6.0)
    parser.add_argument("--steps", nargs="+", help="run only these steps (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))    # not under OUT_DIR: it comes back
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (trial run)",
              "cpu_count": os.cpu_count()}
    demo = write_demo_corpus(work / "demo")
    steps = {
        "demo": lambda: demo_agreement(demo, work, device, args.limit),
        "coqui-fastpitch": lambda: preset_agreement(demo, work, device, "coqui-fastpitch",
                                                    args.limit),
        "espnet": lambda: preset_agreement(demo, work, device, "espnet", args.limit),
        "torchrun": lambda: torchrun_agreement(demo, work, device, args.limit),
        "big_corpus": lambda: big_corpus_throughput(demo, work, device, args.copies,
                                                    args.limit),
        "pyin_batch": lambda: pyin_batch(device, args.pyin_utterances, args.out),
        "librosa": lambda: librosa_baseline(demo, args.librosa_files),
        "long_files": lambda: long_files(demo, work, device, args.long_files, args.long_seconds,
                                         args.limit),
        "bound": lambda: long_files(demo, work, device, args.bound_files, LONG_UTTERANCE_S,
                                    args.limit, name="bound", against_cpu=False,
                                    batch_size=args.bound_batch_size),
        "out_of_memory": lambda: out_of_memory(demo, work, device, args.bound_files, args.limit,
                                               args.oom_memory_gb),
        "held_memory": lambda: out_of_memory(demo, work, device, args.bound_files, args.limit,
                                             args.oom_memory_gb, held_by_tensor=True),
    }
    for name, step in steps.items():
        if args.steps and name not in args.steps:
            continue
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            report[name] = step()
        except Exception:           # keep going: the other steps' figures still count
            report[name] = {"error": traceback.format_exc(limit=8)}
        report[name + "_step_s"] = round(time.perf_counter() - start, 1)
        if device == "cuda":        # held_memory's includes the tensor that holds the memory
            report[name + "_peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
        print(f"{name}: {report[name + '_step_s']} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
