"""Where a job's time goes: wall seconds per stage (decode, resample, mel, pitch, ...).

`stage(name)` adds the time its block takes to the running `StageClock`, and does nothing when
none runs (as torch.profiler.record_function does without a profiler). On CUDA each stage ends
with a synchronize, so that asynchronous kernels count toward the stage that launched them.
Stages do not nest.

    clock = StageClock(device)
    with clock.running():
        with stage("mel"):
            ...
    clock.seconds        # {"mel": 0.42}
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_running: ContextVar[StageClock | None] = ContextVar("running_stage_clock", default=None)
_END = object()


class StageClock:
    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def running(self) -> Iterator[StageClock]:
        token = _running.set(self)
        try:
            yield self
        finally:
            _running.reset(token)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


@contextmanager
def stage(name: str) -> Iterator[None]:
    clock = _running.get()
    if clock is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        if clock.device.type == "cuda":
            torch.cuda.synchronize(clock.device)
        clock.add(name, time.perf_counter() - start)


def timed(name: str, items: Iterable) -> Iterator:
    """`items`, with the time spent producing each one counted as stage `name` (not the time
    the consumer spends between items)."""
    iterator = iter(items)
    while True:
        with stage(name):
            item = next(iterator, _END)
        if item is _END:
            return
        yield item


def summary(seconds: dict[str, float], elapsed_s: float) -> str:
    """One line: each stage's seconds and share of `elapsed_s`, biggest first, then the rest
    (imports, starting the device, finishing the store)."""
    parts = [f"{name} {s:.1f} s ({100 * s / elapsed_s:.0f}%)"
             for name, s in sorted(seconds.items(), key=lambda item: -item[1])]
    rest = max(elapsed_s - sum(seconds.values()), 0.0)
    return "time by stage: " + ", ".join(parts + [f"other {rest:.1f} s"])
