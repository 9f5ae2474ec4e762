"""What a job writes, decided before any feature is computed: the store's utterances, their
frame counts, the order they are processed in, and how many go into each batch.

Frame counts come from the audio headers, except under presets that trim silence: there every
file is decoded once beforehand (`trim_silence`, spread over the ranks) to find the span of
samples its features cover.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from extract.config import Preset
from extract.decode.dali import AudioBatch, decode_batches
from extract.decode.resample import resampled_length, to_preset_rate
from extract.decode.trim import trim_span
from extract.distributed import Ranks
from extract.features.spectral import empty_mel_band_note
from extract.input.corpus import Corpus, CorpusError, Rejection, Utterance
from extract.progress import Progress, format_audio_length, format_bytes
from extract.signals import JobInterrupted
from extract.stages import stage, timed
from extract.store.layout import frame_arrays

CHANNEL_NAMES = {1: "mono", 2: "stereo"}
# A batch holds at most --batch-size times this much padded audio: fewer utterances when they
# are longer, so that memory (about 1.5 MB a second of audio for the hifigan preset's features)
# does not grow with the files' length.
LONG_UTTERANCE_S = 30.0
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 32, 256
# GPU memory in use per frame of a batch at that bound: hifigan (pyin's float64 state tables
# dominate) on an H200 used 26.8 GB after one batch of 256 files of 30 s, 13.5 GB at 128 and
# 52.8 GB at 512 (torch's cache, DALI's pools and the CUDA context included).
GPU_BYTES_PER_FRAME = 41_000
GPU_MEMORY_SHARE = 0.8       # of the device's memory, for the default batch size


def require_positive(flag: str, value: float) -> None:
    """Refuse a count or duration that is not above zero (NaN included)."""
    if not value > 0:
        raise ValueError(f"{flag} must be positive, got {value}")


def plan(corpus: Corpus, preset: Preset, max_duration_s: float
         ) -> tuple[list[Utterance], np.ndarray, list[Rejection]]:
    """The store's utterances (re-indexed in metadata order, each with the `span` of samples
    its frames cover), their frame counts, and every rejection (the corpus's plus audio too
    short to frame or longer than max_duration_s)."""
    min_samples = max((preset.n_fft - preset.hop_length) // 2 + 1, preset.hop_length)
    kept, counts, rejected = [], [], list(corpus.rejected)
    for u in corpus.utterances:
        whole = resampled_length(u.audio.num_samples, u.audio.sample_rate, preset.sample_rate)
        span = (0, whole) if u.span is None else u.span
        n = span[1] - span[0]
        if u.duration_s > max_duration_s:
            reason = (f"{u.path}: {u.duration_s:.0f} s is longer than --max-duration "
                      f"({max_duration_s:g} s); split the file or raise --max-duration")
        elif n < min_samples:
            trimmed = " after trimming silence" if whole >= min_samples else ""
            reason = (f"{u.path}: too short{trimmed}, {n} samples at {preset.sample_rate} Hz; "
                      f"need at least {min_samples}")
        else:
            kept.append(dataclasses.replace(u, index=len(kept), span=span))
            counts.append(preset.num_frames(n))
            continue
        rejected.append(Rejection(u.line_number, u.id, reason))
    rejected.sort(key=lambda r: r.line_number)
    if not kept:
        raise CorpusError("no utterance left to extract:\n  " +
                          "\n  ".join(str(r) for r in rejected[:20]))
    return kept, np.asarray(counts, dtype=np.int64), rejected


def describe_plan(corpus: Corpus, preset: Preset, utterances: list[Utterance],
                  counts: np.ndarray, rejected: list[Rejection]) -> str:
    """What `plan` decided, for `tts-extract check`: totals, the audio formats, every skipped
    item."""
    seconds = np.array([u.duration_s for u in utterances])
    formats = Counter((u.audio.format, u.audio.sample_rate, u.audio.channels)
                      for u in utterances)
    frames = f"{int(counts.sum())} frames" + (" before trimming silence" if preset.trims else "")
    return "\n".join([
        f"{corpus.metadata}: {len(utterances) + len(rejected)} entries, "
        f"{len(utterances)} to extract, {len(rejected)} to skip",
        f"  audio: {format_audio_length(seconds.sum())} (shortest {seconds.min():.1f} s, median "
        f"{np.median(seconds):.1f} s, longest {seconds.max():.1f} s); {frames} at preset "
        f"{preset.name}, a store of about {format_bytes(store_bytes(preset, int(counts.sum())))}",
        "  files: " + ", ".join(f"{count} {fmt} {rate} Hz "
                                f"{CHANNEL_NAMES.get(channels, f'{channels} channels')}"
                                for (fmt, rate, channels), count in formats.most_common()),
        f"  skipped: {len(rejected)} item(s)" + "".join(f"\n    {r}" for r in rejected),
        "  (from the headers: a file the decoder then fails on is skipped, and named, by the job)",
    ])


def store_widths(preset: Preset) -> dict[str, int]:
    """Trailing sizes of the preset's frame arrays (extract.store.layout.frame_arrays)."""
    widths = {"n_mels": preset.n_mels}
    if preset.store_linear:
        widths["n_freqs"] = preset.n_fft // 2 + 1
    return widths


def store_bytes(preset: Preset, frames: int) -> int:
    """Bytes of the frame arrays of `frames` frames: the size of a store on disk, within its
    last chunks' padding (its arrays are not compressed) and the utterance table."""
    row = sum(np.dtype(dtype).itemsize * int(np.prod(trailing))
              for dtype, trailing, _ in frame_arrays(store_widths(preset)).values())
    return frames * row


def data_notes(preset: Preset, utterances: list[Utterance]) -> list[str]:
    """What `check` and `run` point out about the preset and the data (stderr, even when
    quiet): mel bands without an FFT bin, audio sampled too low for the top mel band, lines
    without a speaker in a corpus that names speakers, lines whose file an earlier line names,
    lines without text."""
    return [note for note in (empty_mel_band_note(preset), upsampling_note(utterances, preset),
                              unnamed_speaker_note(utterances), shared_file_note(utterances),
                              empty_text_note(utterances))
            if note]


def upsampling_note(utterances: list[Utterance], preset: Preset) -> str | None:
    """A note when some files' Nyquist frequency is below the preset's top mel frequency:
    resampled up, their log-mel holds no signal above it. None when every file reaches it."""
    low = [u.audio.sample_rate for u in utterances if u.audio.sample_rate / 2 < preset.fmax]
    if not low:
        return None
    return (f"note: {len(low)} of {len(utterances)} utterances are sampled below "
            f"{2 * preset.fmax:g} Hz (lowest {min(low)} Hz), so their log-mel holds no signal "
            f"above {min(low) / 2:g} Hz, though preset {preset.name}'s mels reach "
            f"{preset.fmax:g} Hz; a vocoder trained on them learns that gap")


def unnamed_speaker_note(utterances: list[Utterance]) -> str | None:
    """A note when some lines name a speaker (the fourth field) and others do not: those are
    grouped as one speaker named ''. None when all or none name one."""
    unnamed = [u.line_number for u in utterances if not u.speaker]
    if not unnamed or len(unnamed) == len(utterances):
        return None
    return (f"note: {len(unnamed)} of {len(utterances)} utterances name no speaker (metadata "
            f"{_line_list(unnamed)}) while the others do; they are kept "
            "as one speaker named '' (its own statistics, speaker number and export entries): "
            "give those lines a fourth field")


def shared_file_note(utterances: list[Utterance]) -> str | None:
    """A note when ids of different lines name the same audio file (`a`, `./a` and `x/../a`
    are different ids): that file's features are extracted and stored once per id. None when
    every file is named once."""
    first: dict[Path, Utterance] = {}
    repeats = []
    for u in utterances:
        earlier = first.setdefault(u.path, u)
        if earlier is not u:
            repeats.append((u, earlier))
    if not repeats:
        return None
    shown = "; ".join(f"line {u.line_number} ({u.id}) as line {earlier.line_number} "
                      f"({earlier.id})" for u, earlier in repeats[:3])
    return (f"note: {len(repeats)} utterance(s) name an audio file that an earlier line names "
            f"too ({shown}{'; ...' if len(repeats) > 3 else ''}); each is extracted and stored "
            "under its own id: drop the repeated lines unless that is meant")


def empty_text_note(utterances: list[Utterance]) -> str | None:
    """A note when some lines give no text (both text fields empty): their features are
    extracted, which a vocoder can train on, but not a model that reads text. None when every
    line has text."""
    empty = [u.line_number for u in utterances if not u.text]
    if not empty:
        return None
    return (f"note: {len(empty)} of {len(utterances)} utterances have no text (metadata "
            f"{_line_list(empty)}); their features are stored with an "
            "empty text, which a vocoder can train on but an acoustic model cannot: give "
            + ("those lines their transcripts" if len(empty) > 1 else "that line its transcript"))


def _line_list(numbers: list[int]) -> str:
    """'line 4', or 'lines 1, 3, ...': the first five of some metadata line numbers."""
    shown = ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")
    return f"line{'s' if len(numbers) > 1 else ''} {shown}"


def processing_order(utterances: list[Utterance], counts: np.ndarray,
                     window_frames: int) -> list[Utterance]:
    """Store order cut into windows of about `window_frames` frames, each sorted by (rate,
    length): batches pad little, and shards complete (and leave memory) window by window."""
    order, window, frames = [], [], 0
    for u, n in zip(utterances, counts):
        window.append(u)
        frames += n
        if frames >= window_frames or u is utterances[-1]:
            order += sorted(window, key=by_rate_and_length)
            window, frames = [], 0
    return order


def by_rate_and_length(u: Utterance) -> tuple[int, int]:
    return u.audio.sample_rate, u.audio.num_samples


def default_batch_size(preset: Preset, device: torch.device, ranks: Ranks = Ranks()) -> int:
    """CPU_BATCH_SIZE on the CPU. On a GPU, CUDA_BATCH_SIZE halved until a batch at the bound
    (batch_size * LONG_UTTERANCE_S of audio) should fit GPU_MEMORY_SHARE of the device's memory,
    split among the local ranks that use the device."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    memory = (torch.cuda.get_device_properties(device).total_memory * GPU_MEMORY_SHARE
              / ranks.sharing_gpu())
    return batch_size_for_memory(memory, preset.sample_rate / preset.hop_length)


def batch_size_for_memory(memory_bytes: float, frames_per_s: float) -> int:
    """The largest of CUDA_BATCH_SIZE, its half, ... 1 whose bound fits `memory_bytes`.

    >>> batch_size_for_memory(24e9 * GPU_MEMORY_SHARE, 22050 / 256)   # a 24 GB GPU, hifigan
    128
    """
    size = CUDA_BATCH_SIZE
    while size > 1 and size * LONG_UTTERANCE_S * frames_per_s * GPU_BYTES_PER_FRAME > memory_bytes:
        size //= 2
    return size


def batch_sizes(durations: list[float], batch_size: int) -> list[int]:
    """Utterances per batch along `durations` (seconds, in processing order): batch_size,
    halved until the batch's rows times its longest duration is at most batch_size *
    LONG_UTTERANCE_S, or one utterance; the last batch takes what is left. Sizes change
    rarely along length-sorted windows, as each change starts a new decoding pipeline.

    >>> batch_sizes([10] * 4 + [50] * 4 + [200], 4)
    [4, 2, 2, 1]
    """
    budget = batch_size * LONG_UTTERANCE_S
    sizes, start = [], 0
    while start < len(durations):
        size = batch_size
        while size > 1 and size * max(durations[start:start + size]) > budget:
            size //= 2
        sizes.append(min(size, len(durations) - start))
        start += sizes[-1]
    return sizes


def complete_batches(todo: list[Utterance], utterances: list[Utterance], sample_rate: int,
                     batch_size: int, device: torch.device, threads: int,
                     failed: dict[int, str], progress: Progress, stop: list[int], out: Path
                     ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Decode `todo` (`utterances[index]` is each one's utterance) and yield the files decoded
    to the length their header promised, at `sample_rate`: (indices, audio [B, L], lengths
    [B]). A reason for every other file goes into `failed`; progress moves after each batch;
    `JobInterrupted` is raised between batches once `stop` holds a signal number."""
    sizes = batch_sizes([u.duration_s for u in todo], batch_size)
    for batch in timed("decode", decode_batches([u.path for u in todo], [u.index for u in todo],
                                                sizes, device, threads)):
        failed.update(batch.failed)
        rows = []
        for row, (index, decoded) in enumerate(zip(batch.indices, batch.lengths.tolist())):
            u = utterances[index]
            if decoded == u.audio.num_samples:
                rows.append(row)
            else:
                failed[index] = (f"{u.path}: decoded {decoded} samples but its header says "
                                 f"{u.audio.num_samples}; re-encode it")
        if rows:
            with stage("resample"):
                at_rate = _rows_at_rate(batch, rows, utterances, sample_rate)
            yield at_rate
        progress.update(len(batch.indices) + len(batch.failed),
                        sum(utterances[i].duration_s for i in batch.indices))
        if stop:
            progress.close()
            raise JobInterrupted(stop[0], out)
    progress.close()


def _rows_at_rate(batch: AudioBatch, rows: list[int], utterances: list[Utterance],
                  sample_rate: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """`rows` of `batch`, cropped to their longest and resampled to `sample_rate`:
    (indices, audio, lengths)."""
    indices = [batch.indices[r] for r in rows]
    lengths = batch.lengths[rows]
    audio, lengths = to_preset_rate(batch.audio[rows, : int(lengths.max())], lengths,
                                    [utterances[i].audio.sample_rate for i in indices],
                                    sample_rate)
    return indices, audio, lengths


def trim_silence(corpus: Corpus, preset: Preset, max_duration_s: float, device: torch.device,
                 batch_size: int, ranks: Ranks, stop: list[int], out: Path,
                 show_progress: bool) -> Corpus:
    """`corpus` with each utterance's `span` after the preset's silence trimming (samples at
    the preset's rate), and files that fail to decode moved to its rejections; files longer
    than `max_duration_s` are left for `plan` to reject. Each rank decodes a contiguous share
    of the files; every rank returns the whole corpus."""
    share = sorted((u for i in ranks.shards(len(corpus.utterances))
                    if (u := corpus.utterances[i]).duration_s <= max_duration_s),
                   key=by_rate_and_length)
    spans, failed = {}, {}
    progress = Progress(len(share), sum(u.duration_s for u in share),
                        enabled=show_progress and ranks.is_main, label="trimming silence")
    with torch.inference_mode():
        for indices, audio, lengths in complete_batches(
                share, corpus.utterances, preset.sample_rate, batch_size, device,
                ranks.cpu_threads(), failed, progress, stop, out):
            with stage("trim"):
                for k, index in enumerate(indices):
                    spans[index] = trim_span(audio[k, : int(lengths[k])], preset.trim_top_db,
                                             preset.trim_margin, preset.win_length,
                                             preset.hop_length)
    for part_spans, part_failed in ranks.gather((spans, failed)):
        spans.update(part_spans)
        failed.update(part_failed)
    failures = [Rejection(u.line_number, u.id, failed[u.index])
                for u in corpus.utterances if u.index in failed]
    return dataclasses.replace(
        corpus,
        utterances=[dataclasses.replace(u, span=spans.get(u.index))
                    for u in corpus.utterances if u.index not in failed],
        rejected=sorted(corpus.rejected + failures, key=lambda r: r.line_number))
