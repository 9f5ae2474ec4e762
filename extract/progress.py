"""A dependency-free progress line: items/s, times real time and ETA, on stderr; durations and
sizes for people."""

from __future__ import annotations

import sys
import time

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_audio_length(seconds: float) -> str:
    """'12.3 s', '15.8 min', '1000.0 h'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def format_bytes(count: float) -> str:
    """'27 MB', '1.4 GB', '104 GB': decimal units, a decimal place below 10."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            break
        count /= 1000
    return f"{count:.1f} {unit}" if count < 10 and unit != "bytes" else f"{count:.0f} {unit}"


class Progress:
    """A progress line for `total` items: their rate, times real time (when `total_audio_s` is
    given) and ETA, on `stream` (default: sys.stderr when created). Nothing shows before
    `delay_s` has passed, so quick work stays silent."""

    def __init__(self, total: int, total_audio_s: float | None, enabled: bool = True,
                 min_interval_s: float = 0.2, stream=None, label: str = "",
                 unit: str = "utt", delay_s: float = 0.0):
        self.total, self.total_audio_s = total, total_audio_s
        self.prefix = f"{label}: " if label else ""
        self.unit, self.delay_s = unit, delay_s
        self.done, self.audio_s = 0, 0.0
        self.enabled, self.stream = enabled, stream or sys.stderr
        self.interactive = self.stream.isatty()
        # a log file gets a line every 10 s, a terminal a redraw every 0.2 s
        self.min_interval_s = min_interval_s if self.interactive else 10.0
        self.started = self.last_shown = time.perf_counter()
        self.shown = False

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        share = self.done / max(self.total, 1)
        bar = "#" * int(share * BAR_WIDTH)
        if self.total_audio_s is None:
            real_time = ""
            eta = (self.total - self.done) * elapsed / self.done if self.done else 0.0
        else:
            rate = self.audio_s / elapsed
            real_time = f"{rate:.0f}x real time  "
            eta = (self.total_audio_s - self.audio_s) / rate if rate > 0 else 0.0
        return (f"{self.prefix}[{bar:<{BAR_WIDTH}}] {self.done}/{self.total} {self.unit}  "
                f"{self.done / elapsed:.1f} {self.unit}/s  {real_time}"
                f"elapsed {format_duration(elapsed)}  ETA {format_duration(eta)}")

    def update(self, items: int, audio_s: float = 0.0) -> None:
        self.done += items
        self.audio_s += audio_s
        now = time.perf_counter()
        if not self.enabled or (now - self.started < self.delay_s and not self.shown):
            return
        if now - self.last_shown >= self.min_interval_s or self.done == self.total:
            self.last_shown, self.shown = now, True
            end = "\r" if self.interactive and self.done < self.total else "\n"
            print(self.line(), end=end, file=self.stream, flush=True)

    def close(self) -> None:
        if self.shown and self.interactive and self.done < self.total:
            print(file=self.stream)
