"""The extraction job: corpus -> DALI decode -> resample -> features -> Zarr store.

One code path for every device; `device` only decides where tensors live.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from extract.config import DEFAULT_PRESET, Preset, load_preset
from extract.decode.dali import DecoderOutOfMemory
from extract.decode.trim import cut_spans
from extract.distributed import device_for, ranks_from_env
from extract.features import extract_features
from extract.input.corpus import (MAX_DURATION_S, Corpus, CorpusError, Rejection, Utterance,
                                  load_corpus, manifest_sha256, relative_names)
from extract.plan import (LONG_UTTERANCE_S, complete_batches, data_notes, default_batch_size,
                          plan, processing_order, require_positive, store_bytes, store_widths,
                          trim_silence)
from extract.progress import Progress
from extract.signals import stop_on_signals
from extract.stages import StageClock, stage
from extract.store.index import UtteranceIndex
from extract.store.layout import CHUNK_FRAMES, SHARD_FRAMES, marked_shards
from extract.store.lock import StoreLock
from extract.store.output import StoreError, disk_space_note, open_output
from extract.store.writer import StoreWriter
from extract.versions import dali_found, dependency_versions, job_environment_problem

WINDOW_SHARDS = 32                  # utterances are length-sorted within windows this long


@dataclass
class JobResult:
    path: Path
    utterances: int                 # in the store
    rejected: list[Rejection]       # skipped, with reasons
    audio_s: float                  # of the utterances in the store
    elapsed_s: float
    device: str
    extracted: int                  # utterances this run stored (fewer after --resume)
    already_complete: bool = False  # --resume found nothing to do
    main: bool = True               # rank 0 (or the only process): the one that reports
    stage_s: dict[str, float] = dataclasses.field(default_factory=dict)   # extract.stages

    @property
    def times_real_time(self) -> float:
        return self.audio_s / self.elapsed_s


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without CUDA is an error."""
    if name not in ("auto", "cuda", "cpu"):
        raise ValueError(f"--device must be auto, cuda or cpu, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; "
                           "use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else \
        torch.device("cpu")


def run_job(dataset: str | Path, out: str | Path, preset: str = DEFAULT_PRESET,
            device: str = "auto", batch_size: int | None = None, limit: int | None = None,
            overwrite: bool = False, resume: bool = False,
            max_duration_s: float = MAX_DURATION_S,
            shard_frames: int = SHARD_FRAMES, show_progress: bool = True) -> JobResult:
    """Extract every usable utterance of `dataset` into the store `out`; see the README.

    Under torchrun every rank calls this: rank 0 plans the job and creates (or reopens) the
    store, each rank extracts the utterances of its own contiguous range of shards, and rank 0
    finalises the store once every rank is done."""
    started = time.perf_counter()
    if problem := job_environment_problem(dependency_versions(), dali_found()):
        raise RuntimeError(problem)
    preset_obj = load_preset(preset)
    ranks = ranks_from_env()
    torch_device = device_for(ranks, resolve_device(device))
    if batch_size is None:
        batch_size = default_batch_size(preset_obj, torch_device, ranks)
    check_options(batch_size, shard_frames, max_duration_s, limit, overwrite, resume)
    # at most this rank's share of the CPUs it may use (torch's default counts a whole node's,
    # past a container's quota); fewer where the caller or OMP_NUM_THREADS asked for fewer
    torch.set_num_threads(min(torch.get_num_threads(), ranks.cpu_threads()))
    ranks.start()
    lock = None
    clock = StageClock(torch_device)
    setup = StageClock(torch_device)   # rank 0's own stages, not averaged over the ranks
    try:
        corpus = resuming = None
        if ranks.is_main:
            try:
                with setup.running():
                    corpus, lock, resuming = _open(dataset, out, preset_obj, limit, overwrite,
                                                   resume, max_duration_s, shard_frames,
                                                   show_progress)
            except Exception as e:   # raised on every rank by share()
                corpus = e
        corpus = ranks.share(corpus)
        if preset_obj.trims:
            with stop_on_signals() as stop, clock.running(), explain_out_of_memory(batch_size):
                corpus = trim_silence(corpus, preset_obj, max_duration_s, torch_device,
                                      batch_size, ranks, stop, Path(out), show_progress)
        job = None
        if ranks.is_main:
            try:
                with setup.running(), stage("create store"):
                    job = _create_store(corpus, out, preset_obj, resuming, max_duration_s,
                                        shard_frames, show_progress)
            except Exception as e:
                job = e
        job = ranks.share(job)
        utts, counts, rejected = job.utterances, job.counts, job.rejected
        writer = StoreWriter(Path(out), store_index(utts, counts, job.root), {}, {},
                             shard_frames=shard_frames, mode="attach",
                             owned=ranks.shards(-(-int(counts.sum()) // shard_frames)))
        if writer.complete:
            return JobResult(writer.path, len(utts), rejected,
                             sum(u.duration_s for u in utts), time.perf_counter() - started,
                             str(torch_device), 0, True, ranks.is_main)
        todo = [u for u in processing_order(utts, counts, WINDOW_SHARDS * shard_frames)
                if writer.needed(u.index)]
        with stop_on_signals() as stop, clock.running(), explain_out_of_memory(batch_size):
            failed = _extract(todo, utts, counts, preset_obj, torch_device, batch_size, writer,
                              stop, ranks.cpu_threads(),
                              Progress(len(todo), sum(u.duration_s for u in todo),
                                       enabled=show_progress and ranks.is_main))
        parts = ranks.gather((failed, len(todo), clock.seconds))
        failed = {i: reason for part, _, _ in parts for i, reason in part.items()}
        extracted = sum(n - len(part) for part, n, _ in parts)
        stage_s = {name: round(sum(s.get(name, 0.0) for _, _, s in parts) / len(parts), 3)
                   for name in sorted({name for _, _, s in parts for name in s})}
        stage_s.update((name, round(s, 3)) for name, s in setup.seconds.items())
        if failed:
            writer.write_open_shards()
            failures = [Rejection(utts[i].line_number, utts[i].id, reason)
                        for i, reason in failed.items()]
            rejected = sorted(rejected + failures, key=lambda r: r.line_number)
            utts = [u for u in utts if u.index not in failed]
            if not utts:
                raise CorpusError("no utterance could be decoded:\n  " +
                                  "\n  ".join(str(r) for r in rejected[:20]))
        ranks.barrier()                                   # every shard is on disk
        audio_s = sum(u.duration_s for u in utts)
        if ranks.is_main:
            if failed:
                writer.remove_utterances(sorted(failed), [r.to_dict() for r in failures])
            elapsed = time.perf_counter() - started
            writer.finish({"manifest_sha256": manifest_sha256(job.root, utts),
                           "rejected": [r.to_dict() for r in rejected],
                           "run": {"device": str(torch_device), "ranks": ranks.world_size,
                                   "batch_size": batch_size,
                                   "elapsed_s": round(elapsed, 3),
                                   "audio_s": round(audio_s, 3), "resumed": job.resuming,
                                   "stage_s": stage_s}})
        ranks.barrier()                                   # the store is complete
    finally:
        if lock is not None:
            lock.release()
        ranks.stop()
    return JobResult(writer.path, len(utts), rejected, audio_s, time.perf_counter() - started,
                     str(torch_device), extracted, main=ranks.is_main, stage_s=stage_s)


def check_options(batch_size: int, shard_frames: int, max_duration_s: float,
                  limit: int | None = None, overwrite: bool = False, resume: bool = False
                  ) -> None:
    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other: --resume keeps an "
                         "interrupted run's work, --overwrite deletes it")
    for flag, value in (("--batch-size", batch_size), ("--shard-frames", shard_frames),
                        ("--max-duration", max_duration_s), ("--limit", limit)):
        if value is not None:
            require_positive(flag, value)
    if shard_frames > CHUNK_FRAMES and shard_frames % CHUNK_FRAMES:
        raise ValueError(f"--shard-frames must be at most {CHUNK_FRAMES} or a multiple of it, "
                         f"got {shard_frames}")


@contextlib.contextmanager
def explain_out_of_memory(batch_size: int) -> Iterator[None]:
    """An error that says memory ran out (torch's, DALI's) as one that names the batch size and
    the fix."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        what = memory_that_ran_out(e)
        if what is None:
            raise
        raise RuntimeError(
            f"{what} ran out with --batch-size {batch_size} (batches of up to "
            f"{batch_size * LONG_UTTERANCE_S:.0f} s of audio); finished shards are kept: rerun "
            f"with --resume --batch-size {max(batch_size // 2, 1)}") from e


def memory_that_ran_out(error: BaseException) -> str | None:
    """Which memory `error` says ran out, or None."""
    if isinstance(error, DecoderOutOfMemory):
        return f"the audio decoder's (DALI's) {error.memory} memory"
    if isinstance(error, torch.OutOfMemoryError):
        return "the GPU's memory"
    if "DefaultCPUAllocator: can't allocate memory" in str(error):
        return "host memory"
    return None


def store_index(utts: list[Utterance], counts: np.ndarray, root: Path) -> UtteranceIndex:
    """The store's per-utterance arrays for planned utterances (`extract.plan.plan`) of the
    dataset at `root`: frame offsets, sample spans, and the string fields (the audio file
    relative to root/wavs), speaker only when the corpus names speakers."""
    fields = {"id": [u.id for u in utts], "text": [u.text for u in utts],
              "audio": relative_names(utts, root / "wavs")}
    if any(u.speaker for u in utts):
        fields["speaker"] = [u.speaker for u in utts]
    return UtteranceIndex(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                          np.array([u.span for u in utts], dtype=np.int64).reshape(-1, 2),
                          fields)


@dataclass
class _Job:
    """What rank 0 decides and every rank needs."""
    root: Path
    utterances: list[Utterance]
    counts: np.ndarray
    rejected: list[Rejection]
    resuming: bool


def _open(dataset, out, preset: Preset, limit, overwrite: bool, resume: bool,
          max_duration_s: float, shard_frames: int, show_progress: bool
          ) -> tuple[Corpus, StoreLock, bool]:
    """Read the corpus and lock the output: (corpus, lock, whether a store is resumed)."""
    with stage("read corpus"):
        corpus = load_corpus(dataset, limit, show_progress)
        utterances, counts, _ = plan(corpus, preset, max_duration_s)   # none: fail before `out`
    for note in data_notes(preset, utterances):   # about the data: shown even when quiet
        print(note, file=sys.stderr)
    out = Path(out)
    with stage("open output"):
        lock, resuming = open_output(out, overwrite, resume, show_progress)
    frames = int(counts.sum())
    shards = -(-frames // shard_frames)
    unfinished = shards - len(marked_shards(out)) if resuming else shards
    if note := disk_space_note(out, store_bytes(preset, frames) * unfinished // shards):
        print(note, file=sys.stderr)
    if lock.stale_owner and show_progress:
        print(f"note: {out} was left by a job that did not finish ({lock.stale_owner}); "
              f"{'resuming it' if resuming else 'starting over'}", file=sys.stderr)
    return corpus, lock, resuming


def _create_store(corpus: Corpus, out, preset: Preset, resuming: bool, max_duration_s: float,
                  shard_frames: int, show_progress: bool) -> _Job:
    """Plan the job and create (or reopen) its store."""
    utts, counts, rejected = plan(corpus, preset, max_duration_s)
    writer = StoreWriter(Path(out), store_index(utts, counts, corpus.root),
                         store_widths(preset),
                         {"config": preset.to_dict(),
                          "manifest_sha256": manifest_sha256(corpus.root, utts),
                          "versions": dependency_versions(),
                          "rejected": [r.to_dict() for r in rejected]},
                         chunk_frames=min(CHUNK_FRAMES, shard_frames),
                         shard_frames=shard_frames,
                         mode="resume" if resuming else "create", owned=range(0),
                         show_progress=show_progress)
    if writer.redone and show_progress:
        print(f"note: {len(writer.redone)} finished shard(s) of {out} are not whole on disk (a "
              f"machine crash?); redoing them", file=sys.stderr)
    if writer.compacting:
        utts, counts, rejected = _finish_compaction(writer, utts, counts, rejected)
    return _Job(corpus.root, utts, counts, rejected, resuming)


def _finish_compaction(writer: StoreWriter, utts: list[Utterance], counts: np.ndarray,
                       rejected: list[Rejection]):
    """Complete the removal of decoder failures an interrupted run had begun; return the
    plan without them: (utterances renumbered, their frame counts, all rejections)."""
    removed, reasons = writer.compacting["removed"], writer.compacting["rejected"]
    if {utts[i].id for i in removed if i < len(utts)} != {r["entry"] for r in reasons}:
        raise StoreError(f"cannot resume {writer.path}: the utterances it was removing are not "
                         "where the plan puts them (did the input change?); rerun with "
                         "--overwrite to start over")
    writer.remove_utterances(removed, reasons)
    dropped = set(removed)
    kept = [u for u in utts if u.index not in dropped]
    failures = [Rejection.from_dict(r) for r in reasons]
    return ([dataclasses.replace(u, index=i) for i, u in enumerate(kept)],
            np.delete(counts, removed),
            sorted(rejected + failures, key=lambda r: r.line_number))


def _extract(todo: list[Utterance], utts: list[Utterance], counts: np.ndarray, preset: Preset,
             device: torch.device, batch_size: int, writer: StoreWriter, stop: list[int],
             threads: int, progress: Progress) -> dict[int, str]:
    """Decode, featurise and store `todo`; return {index: reason} for files that fail to
    decode. Raises `JobInterrupted` between batches once `stop` holds a signal number."""
    failed: dict[int, str] = {}
    try:
        with torch.inference_mode():
            for indices, audio, lengths in complete_batches(todo, utts, preset.sample_rate,
                                                            batch_size, device, threads, failed,
                                                            progress, stop, writer.path):
                _featurise(indices, audio, lengths, utts, counts, preset, device, writer)
    except BaseException:
        # finished shards keep their work; the error on its way (a stop, or the first shard
        # that failed to write) is the one to report, not a later shard's
        with stage("write"):
            writer.wait(raise_error=False)
        raise
    with stage("write"):
        writer.wait()
    return failed


def _featurise(indices: list[int], audio: torch.Tensor, lengths: torch.Tensor,
               utts: list[Utterance], counts: np.ndarray, preset: Preset, device: torch.device,
               writer: StoreWriter) -> None:
    """Features of decoded utterances at the preset's rate, into the writer."""
    if preset.trims:
        with stage("trim"):
            audio, lengths = cut_spans(audio, [utts[i].span for i in indices])
    features = extract_features(audio, lengths, preset)
    with stage("to host"):
        n_frames = torch.as_tensor(counts[indices], device=device)
        valid = torch.arange(features["mel"].shape[1], device=device)[None] < n_frames[:, None]
        host = {name: value[valid].cpu().numpy() for name, value in features.items()}
    with stage("write"):
        edges = np.concatenate([[0], np.cumsum(counts[indices])])
        for k, index in enumerate(indices):
            writer.add(index, {name: v[edges[k]:edges[k + 1]] for name, v in host.items()})
