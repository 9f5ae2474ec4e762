"""torchrun: N CPU ranks on gloo write the store a single process writes; a killed rank fails
the job without a complete-looking store, and --resume finishes it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from extract.loader import FeatureStore
from extract.loader.feature_store import StoreFormatError

from conftest import ARGS, assert_same_store, start, wait_for_shards, write_corpus


def torchrun(nproc: int, tmp_path: Path) -> list[str]:
    """torchrun's command, its logs under `tmp_path` (not a new folder in /tmp per launch)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", f"--log-dir={tmp_path / 'torchrun'}"]


@pytest.mark.parametrize("nproc", [2, 3])
def test_ranks_write_exactly_the_single_process_store(corpus, reference, tmp_path, nproc):
    out = tmp_path / "out.zarr"
    job = start(corpus, out, launcher=torchrun(nproc, tmp_path))
    stdout, stderr = job.communicate(timeout=600)
    assert job.returncode == 0, stderr
    assert stdout.count("done: 36 utterances") == 1           # rank 0 reports, once
    assert_same_store(out, reference)
    run = FeatureStore(out).attrs["run"]
    assert run["ranks"] == nproc and f"by {nproc} ranks" in stdout
    # each stage's seconds: the mean over ranks (rank 0's own for its setup stages), so within
    # the job's own time
    assert {"read corpus", "create store", "decode", "write"} <= set(run["stage_s"])
    assert sum(run["stage_s"].values()) <= run["elapsed_s"]


def test_ranks_share_the_silence_trimming_pass(corpus, trimmed_reference, tmp_path):
    """Under a trimming preset each rank decodes its share of the files to find their spans;
    the store is still the single process's."""
    out = tmp_path / "out.zarr"
    job = start(corpus, out, "--preset", "coqui-fastpitch", launcher=torchrun(2, tmp_path))
    _, stderr = job.communicate(timeout=600)
    assert job.returncode == 0, stderr
    assert "trimming silence:" in stderr
    assert_same_store(out, trimmed_reference)


def workers_of(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return sorted(children)


def test_a_killed_rank_fails_the_job_and_resume_completes_it(corpus, reference, tmp_path):
    out = tmp_path / "out.zarr"
    job = start(corpus, out, launcher=torchrun(2, tmp_path))
    wait_for_shards(job, out, 1)
    os.kill(workers_of(job.pid)[-1], signal.SIGKILL)
    _, stderr = job.communicate(timeout=300)
    assert job.returncode != 0
    with pytest.raises(StoreFormatError, match="incomplete"):
        FeatureStore(out)
    resumed = subprocess.run([*torchrun(2, tmp_path), "-m", "extract", "run", str(corpus), str(out),
                              *ARGS, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_store(out, reference)


def test_ranks_beyond_the_gpu_count_share_the_gpus(monkeypatch):
    """Three local ranks on two GPUs: LOCAL_RANK modulo the GPU count (gloo allows sharing)."""
    import torch

    from extract.distributed import Ranks, device_for

    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    devices = [device_for(Ranks(rank, 3, rank, 3), torch.device("cuda")) for rank in range(3)]
    assert devices == [torch.device("cuda", i) for i in (0, 1, 0)] and chosen == [0, 1, 0]
    assert device_for(Ranks(), torch.device("cuda")) == torch.device("cuda")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_threads_follow_the_cpus_the_process_may_use():
    """Under an affinity mask of one CPU (as Slurm or taskset set), a process and each of two
    local ranks get one thread, whatever os.cpu_count() says."""
    one_cpu = min(os.sched_getaffinity(0))
    code = ("import os; from extract.distributed import Ranks; "
            "print(os.cpu_count(), Ranks().cpu_threads(), Ranks(1, 2, 1, 2).cpu_threads())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}), check=True)
    cpu_count, alone, per_rank = map(int, result.stdout.split())
    assert (alone, per_rank) == (1, 1), f"os.cpu_count() {cpu_count}"


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "450000 100000\n"}, 4),                   # docker --cpus=4.5 (cgroup v2)
    ({"cpu.max": "50000 100000\n"}, 1),                    # half a CPU: still one thread
    ({"cpu.max": "max 100000\n"}, None),                   # no quota
    ({"quota": "100000\n", "period": "100000\n"}, 1),      # cgroup v1
    ({"quota": "-1\n", "period": "100000\n"}, None),
    ({}, None),                                            # no cgroup files at all
])
def test_threads_stay_within_a_containers_cpu_quota(tmp_path, monkeypatch, files, expected):
    import extract.distributed as distributed

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(distributed, "CPU_QUOTA_FILES", (
        (str(tmp_path / "cpu.max"),), (str(tmp_path / "quota"), str(tmp_path / "period"))))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    cpus = 8 if expected is None else expected              # the affinity mask's 8 otherwise
    assert distributed.usable_cpus() == cpus
    assert distributed.Ranks(0, 2, 0, 2).cpu_threads() == max(1, cpus // 2)


def test_the_job_runs_torch_within_the_cpu_quota(tmp_path, monkeypatch):
    """Under a quota of one CPU the job's torch threads drop to one (torch's default counts
    the machine's CPUs, quota or not)."""
    import torch

    import extract.distributed as distributed
    from extract.job import run_job

    (tmp_path / "cpu.max").write_text("100000 100000\n")
    monkeypatch.setattr(distributed, "CPU_QUOTA_FILES", ((str(tmp_path / "cpu.max"),),))
    corpus = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16")])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_job(corpus, tmp_path / "out.zarr", device="cpu", show_progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
