"""benchmarks/gpu_check.py, the script a lent GPU machine runs once, tried on the CPU at a small
size so that it cannot rot unnoticed: every step must finish without an error."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_every_step_of_the_gpu_check_runs(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--limit", "6",
                             "--copies", "1", "--pyin-utterances", "4", "--librosa-files", "2",
                             "--long-files", "2", "--long-seconds", "35", "--bound-files", "2",
                             "--bound-batch-size", "2"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = ("demo", "coqui-fastpitch", "espnet", "torchrun", "big_corpus", "pyin_batch",
             "librosa", "long_files", "bound", "out_of_memory", "held_memory")
    errors = {name: report[name]["error"] for name in steps if "error" in report[name]}
    assert not errors, errors
    assert report["demo"]["agreement_ok"]         # on the CPU both sides are the CPU path
    assert report["coqui-fastpitch"]["same_spans"] and report["espnet"]["same_frame_counts"]
    assert report["pyin_batch"]["triton_equals_torch"]
    assert report["pyin_batch"]["viterbi_s"] > 0 < report["pyin_batch"]["observations_s"]
    assert 50 < report["pyin_batch"]["traffic_kb_per_frame"] < 1000
    assert report["pyin_batch"]["observations_tb_per_s"] > 0
    sweep = report["pyin_batch"]["viterbi_kernel_sweep"]
    assert len(sweep) > 3 and all(entry["same_states"] for entry in sweep.values()), sweep
    assert all(entry["seconds"] > 0 for entry in sweep.values())
    troughs = report["pyin_batch"]["trough_sums"]
    assert troughs["same_states"] and troughs["log_obs_max_abs_diff"] < 1e-9, troughs
    assert "aten::" in (tmp_path / "pyin_profile.txt").read_text()
    assert report["torchrun"]["ranks"] == 2 and all(report["torchrun"]["identical"].values())
    assert report["big_corpus"]["batch256"][0]["audio_s"] > 0 < report["librosa"]["xrt"]
    assert report["big_corpus"]["torchrun_2_ranks"]["per_rank_xrt"] > 0
    assert report["long_files"]["agreement_ok"] and report["long_files"]["audio_s"] > 70
    assert report["bound"]["audio_s"] > 60 and "cpu_vs_gpu" not in report["bound"]
    assert report["bound"]["batch_size"] == 2 and report["long_files"]["batch_size"] == 32


def test_traffic_counter_counts_each_ops_bytes_by_its_rule():
    """benchmarks/pyin_traffic.py's model of GPU time: an op's inputs plus outputs, nothing
    for views, a fill written once, an in-place op read and written, an indexed write its
    indices and values; a broadcast operand its distinct elements, a strided one a 32-byte
    sector per element up to its stride."""
    sys.path.insert(0, str(SCRIPT.parent))
    import torch
    from pyin_traffic import TrafficCounter

    a, b = torch.ones(1000), torch.ones(1000)           # 4000 bytes each
    index = torch.arange(10)                            # 80 bytes
    pairs = torch.ones(1000, 2)                         # [:, 0]: 1000 floats 8 bytes apart
    column = torch.ones(100, 50)                        # [:, 0]: 100 floats 200 bytes apart
    cases = [(lambda: a + b, 12000), (lambda: a[10:].view(-1, 10).t(), 0),
             (lambda: a.fill_(2.0), 4000), (lambda: a.mul_(b), 12000),
             (lambda: a.index_put_((index,), b[:10]), 80 + 40 + 40),
             (lambda: a.sum(), 4004), (lambda: a.copy_(b[:1].expand(1000)), 4 + 4000),
             (lambda: pairs[:, 0] * 2, 8000 + 4000), (lambda: column[:, 0] + 1, 3200 + 400)]
    for run, expected in cases:
        counter = TrafficCounter()
        with counter:
            run()
        assert sum(counter.bytes_by_line.values()) == expected, (run, counter.bytes_by_line)


def test_pyin_traffic_script_reports_bytes_a_frame():
    script = SCRIPT.parent / "pyin_traffic.py"
    result = subprocess.run([sys.executable, str(script), "--utterances", "2", "--lines", "40"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("690 frames: ")
    assert any("torch.fft.rfft" in line for line in lines[1:])
    assert any("the Triton kernel" in line for line in lines[1:])
