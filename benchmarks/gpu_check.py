"""One prepared run for a lent GPU machine: checks the CUDA path against the CPU path and
measures throughput. Writes gpu_check.json and prints a summary.

    python benchmarks/gpu_check.py OUT_DIR [--copies 20] [--librosa-files 64]

1. the demo corpus on --device cpu and --device cuda: features must agree (tolerances below),
   also under coqui-fastpitch (silence trimming: same spans, so same frame counts) and espnet
   (WORLD's dio);
2. a larger corpus (the demo's files repeated --copies times) on cuda, timed twice;
3. pyin alone on 1000 utterances in one batch: the Triton decoder against the torch one on the
   GPU, and times real time;
4. librosa mel + pyin with one process per core on the first --librosa-files files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from extract.demo import write_demo_corpus
from extract.job import run_job
from extract.loader import FeatureStore

sys.path.insert(0, str(Path(__file__).parent))
from job_vs_librosa import time_librosa  # noqa: E402

MEL_ATOL = 1e-3        # log domain; cuFFT and the CPU FFT round differently
VOICING_AGREEMENT = 0.99


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


def pyin_batch(utterances: int = 1000, seconds: float = 4.0) -> dict:
    """pyin on `utterances` speech-like clips at once; Triton vs torch decoding on the GPU."""
    from extract.demo import synth_utterance
    from extract.features.pyin import pyin, transition_bands
    from extract.features.viterbi import viterbi_torch
    from extract.kernels.viterbi import viterbi_triton

    clips = [synth_utterance(seconds, 22050, np.random.default_rng(k)) for k in range(16)]
    audio = torch.from_numpy(np.stack(clips * (utterances // 16 + 1))[:utterances]).float()
    frames = torch.nn.functional.pad(audio, (512, 512)).cuda().unfold(1, 1024, 256)
    counts = torch.full((utterances,), frames.shape[1], device="cuda")
    result = {"utterances": utterances, "audio_s": utterances * seconds}
    for attempt in range(2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        _, voiced, _ = pyin(frames, counts, 22050, 256, 65.406, 2093.0)
        torch.cuda.synchronize()
        result[f"xrt_run{attempt}"] = result["audio_s"] / (time.perf_counter() - start)
    log_obs = torch.randn(64, 300, 1202, dtype=torch.float64, device="cuda")
    lengths = torch.randint(1, 301, (64,), device="cuda")
    bands = transition_bands(601, 51, 0.01).to(torch.device("cuda"))
    result["triton_equals_torch"] = bool(torch.equal(viterbi_triton(log_obs, lengths, bands),
                                                     viterbi_torch(log_obs, lengths, bands)))
    _, cpu_voiced, _ = pyin(frames[:16].cpu(), counts[:16].cpu(), 22050, 256, 65.406,
                                 2093.0)
    result["voicing_agreement_cpu_gpu"] = float((cpu_voiced == voiced[:16].cpu()).float().mean())
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--librosa-files", type=int, default=64)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/gpu_check")
    shutil.rmtree(work, ignore_errors=True)
    report = {"device": torch.cuda.get_device_name(0), "cpu_count": os.cpu_count()}

    demo = write_demo_corpus(work / "demo")
    cpu = run_job(demo, work / "cpu.zarr", device="cpu", show_progress=False)
    gpu = run_job(demo, work / "gpu.zarr", device="cuda", show_progress=False)
    report["demo_cpu_xrt"], report["demo_gpu_xrt"] = cpu.times_real_time, gpu.times_real_time
    report["cpu_vs_gpu"] = agreement = compare(FeatureStore(cpu.path), FeatureStore(gpu.path))
    report["agreement_ok"] = (agreement["mel_max_abs_diff"] <= MEL_ATOL
                              and agreement["voicing_agreement"] >= VOICING_AGREEMENT)

    for preset in ("coqui-fastpitch", "espnet"):      # silence trimming; WORLD's dio
        stores = [FeatureStore(run_job(demo, work / f"{preset}-{device}.zarr", preset=preset,
                                       device=device, show_progress=False).path)
                  for device in ("cpu", "cuda")]
        report[f"{preset}_same_spans"] = bool(np.array_equal(stores[0].spans, stores[1].spans))
        report[f"{preset}_same_frame_counts"] = same = bool(
            np.array_equal(stores[0].lengths, stores[1].lengths))
        if same:
            report[f"{preset}_cpu_vs_gpu"] = compare(*stores)

    big = repeated_corpus(demo, work / "big", args.copies)
    for batch_size in (256, 512):
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            r = run_job(big, work / "big.zarr", device="cuda", batch_size=batch_size,
                        overwrite=True, show_progress=False)
            runs.append({"xrt": r.times_real_time, "wall_s": time.perf_counter() - start,
                         "audio_s": r.audio_s})
        report[f"big_gpu_batch{batch_size}"] = runs
    report["pyin_batch"] = pyin_batch()
    report["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9

    try:
        paths = sorted(str(p) for p in (demo / "wavs").glob("*.wav"))[: args.librosa_files]
        audio_s, wall = time_librosa(paths, os.cpu_count())
        report["librosa_xrt"] = audio_s / wall
    except Exception as e:  # librosa may be missing on the device image
        report["librosa_error"] = repr(e)

    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
