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

from conftest import ARGS, assert_same_store, start, wait_for_shards


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
