import io
from types import SimpleNamespace

import extract.progress
from extract.progress import Progress, format_audio_length


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress_at(times: list[float], monkeypatch, **options) -> tuple[Progress, Terminal]:
    """A Progress whose clock reads `times` in turn (its start first)."""
    clock = iter(times)
    monkeypatch.setattr(extract.progress, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    stream = Terminal()
    return Progress(stream=stream, **options), stream


def test_work_quicker_than_the_delay_shows_nothing(monkeypatch):
    progress, stream = progress_at([0.0, 0.3, 0.6, 0.9], monkeypatch, total=3,
                                   total_audio_s=None, unit="files", delay_s=1.0)
    for _ in range(3):
        progress.update(1)
    progress.close()
    assert stream.getvalue() == ""


def test_counting_files_gives_their_rate_and_eta_without_real_time(monkeypatch):
    # start, then (update, line) pairs: 2 files at 2 s, all 4 at 4 s
    progress, stream = progress_at([0.0, 2.0, 2.0, 4.0, 4.0], monkeypatch, total=4,
                                   total_audio_s=None, unit="files", delay_s=1.0,
                                   label="reading audio headers")
    progress.update(2)
    progress.update(2)
    first, last = stream.getvalue().split("\r")
    assert first.startswith("reading audio headers: [############            ] 2/4 files")
    assert "1.0 files/s" in first and "ETA 0:00:02" in first and "real time" not in first
    assert last.endswith("4/4 files  1.0 files/s  elapsed 0:00:04  ETA 0:00:00\n")


def test_audio_progress_gives_times_real_time(monkeypatch):
    progress, stream = progress_at([0.0, 5.0, 5.0], monkeypatch, total=10, total_audio_s=100.0)
    progress.update(5, 50.0)
    assert "5/10 utt  1.0 utt/s  10x real time  elapsed 0:00:05  ETA 0:00:05" in stream.getvalue()
    progress.close()
    assert stream.getvalue().endswith("\n")


def test_audio_lengths_read_in_seconds_minutes_or_hours():
    assert [format_audio_length(s) for s in (0.05, 59.94, 60, 948, 3599, 3600, 3.6e6)] == \
        ["0.1 s", "59.9 s", "1.0 min", "15.8 min", "60.0 min", "1.0 h", "1000.0 h"]
