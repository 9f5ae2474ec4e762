"""One job over several processes, launched by torchrun (or srun running torchrun per node).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; without them the job is a
single process and every call here is a no-op. Ranks talk through torch.distributed's gloo
backend, on GPUs too: only small Python objects travel (the plan, errors, decoder failures),
and gloo, unlike nccl, lets several ranks share a GPU. Features go straight from each rank to
the shared store.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(hours=2)   # a rank waits this long for the others at a barrier
# a container's CPU quota: cgroup v2's "QUOTA PERIOD" (or "max PERIOD"), v1's two files (-1: none)
CPU_QUOTA_FILES = (("/sys/fs/cgroup/cpu.max",),
                   ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def start(self) -> None:
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("gloo", timeout=TIMEOUT)

    def stop(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def share(self, value):
        """Rank 0's `value` on every rank. An exception is re-raised on every rank."""
        if self.distributed:
            box = [value]
            dist.broadcast_object_list(box, src=0)
            value = box[0]
        if isinstance(value, BaseException):
            raise value
        return value

    def gather(self, value) -> list:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def shards(self, count: int) -> range:
        """This rank's contiguous share of `count` shards."""
        return range(self.rank * count // self.world_size,
                     (self.rank + 1) * count // self.world_size)

    def sharing_gpu(self) -> int:
        """How many local ranks use this rank's GPU (device_for: they take turns)."""
        gpus = torch.cuda.device_count()
        return len(range(self.local_rank % gpus, self.local_world_size, gpus))

    def cpu_threads(self) -> int:
        """CPU threads for this rank: the CPUs it may use split among the local ranks."""
        return max(1, usable_cpus() // self.local_world_size)


def usable_cpus() -> int:
    """CPUs this process may use, which os.cpu_count() ignores: its affinity mask (a Slurm
    allocation, taskset, docker --cpuset-cpus), at most its container's CPU quota (docker
    --cpus, a Kubernetes CPU limit), rounded down."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    return cpus if quota is None else min(cpus, max(1, int(quota)))


def cpu_quota() -> float | None:
    """The CPUs a cgroup CPU quota allows (quota / period; cgroup v2, else v1), or None."""
    for files in CPU_QUOTA_FILES:
        try:
            quota, period = " ".join(Path(f).read_text() for f in files).split()[:2]
            return None if quota in ("max", "-1") else int(quota) / int(period)
        except (OSError, ValueError):
            continue
    return None


def ranks_from_env() -> Ranks:
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return Ranks()
    world = int(env["WORLD_SIZE"])
    return Ranks(int(env["RANK"]), world, int(env.get("LOCAL_RANK", 0)),
                 int(env.get("LOCAL_WORLD_SIZE", world)))


def device_for(ranks: Ranks, device: torch.device) -> torch.device:
    """Each rank on GPU LOCAL_RANK; with more local ranks than GPUs, they take turns."""
    if device.type == "cuda" and ranks.distributed:
        index = ranks.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device
