"""`tts-extract inspect`'s text: what a store holds, how the job that wrote it ran."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from extract.progress import format_audio_length, format_bytes
from extract.stages import summary
from extract.store.layout import (FRAME_ARRAYS, OFFSETS, OPTIONAL_FRAME_ARRAYS, SPANS,
                                  UTTERANCE_GROUP)

if TYPE_CHECKING:
    from extract.loader.feature_store import FeatureStore

SHOWN_REJECTIONS = 20


def describe_store(store: FeatureStore, shown_rejections: int | None = SHOWN_REJECTIONS) -> str:
    """What the store holds, with the first `shown_rejections` skipped items (None: all)."""
    c, s = store.config, store.stats
    rejected = store.attrs.get("rejected", [])
    hidden = 0 if shown_rejections is None else max(0, len(rejected) - shown_rejections)
    frames = store.lengths
    trimmed = c.get("trim_top_db") is not None
    audio = format_audio_length(int(np.diff(store.spans).sum()) / c["sample_rate"])
    audio += " after trimming silence" if trimmed else ""
    return "\n".join([
        f"{store.path}: tts-extract store, format {store.attrs['format_version']}, complete",
        f"  utterances: {len(store)}  frames: {frames.sum()}  "
        f"(min {frames.min()}, median {int(np.median(frames))}, max {frames.max()})  "
        f"audio: {audio}",
        f"  preset: {c['name']} ({c['description']})",
        f"  {c['sample_rate']} Hz, n_fft {c['n_fft']}, win {c['win_length']}, "
        f"hop {c['hop_length']}, {c['n_mels']} mels {c['fmin']:g}-{c['fmax']:g} Hz, "
        f"frames: {c['frame_count_rule']}, frame 0 centre {c['frame_center_offset_s']:.6f} s"
        + (f", after trimming silence below {c['trim_top_db']:g} dB" if trimmed else ""),
        f"  pitch: {c['pitch']['method']} {c['pitch']['fmin']:g}-{c['pitch']['fmax']:g} Hz; "
        f"f0 mean {_fmt(s['f0_mean'])} std {_fmt(s['f0_std'])} Hz over "
        f"{s['f0_voiced_frames']} voiced frames",
        f"  energy mean {_fmt(s['energy_mean'])} std {_fmt(s['energy_std'])}",
        *_speaker_lines(store),
        f"  log-mel mean {s['mel_mean_global']:.6f} std {s['mel_std_global']:.6f} over all "
        "bins (Matcha's data_statistics: mel_mean, mel_std)",
        f"  arrays ({format_bytes(store.stored_bytes)} of frames): "
        + ", ".join(f"{n} {d}" for n, (d, _, _) in
                    {**FRAME_ARRAYS, **OPTIONAL_FRAME_ARRAYS}.items() if n in store.array_names)
        + f", {OFFSETS} int64, {SPANS} int64, "
        f"{UTTERANCE_GROUP}/{{{','.join(store.field_names)}}} string",
        f"  skipped: {len(rejected)} item(s)"
        + "".join(f"\n    line {r['line']} ({r['entry']}): {r['reason']}"
                  for r in rejected[:shown_rejections])
        + (f"\n    ... and {hidden} more (tts-extract inspect {store.path} lists them all)"
           if hidden else ""),
        *_run_lines(store.attrs.get("run")),
        f"  manifest sha256: {store.attrs['manifest_sha256']}",
        "  versions: " + ", ".join(f"{k} {v}" for k, v in store.attrs["versions"].items()),
    ])


def _speaker_lines(store: FeatureStore) -> list[str]:
    """How many speakers, their utterance counts, and those without a voiced frame."""
    if store.speakers is None:
        return []
    counts = np.array(list(Counter(store.speakers).values()))
    mute = [name for name, s in store.stats["speakers"].items() if s["f0_mean"] is None]
    return [f"  speakers: {len(counts)}, {counts.min()}-{counts.max()} utterances each "
            f"(median {np.median(counts):g}); f0 and energy statistics per speaker"
            + (f"; {len(mute)} with no voiced frame ({', '.join(map(repr, mute[:3]))}"
               f"{', ...' if len(mute) > 3 else ''}: normalize=True uses the corpus's "
               "statistics for them)" if mute else "")]


def _run_lines(run: dict | None) -> list[str]:
    """How the job that finished the store ran."""
    if not run:
        return []
    elapsed = run["elapsed_s"]
    line = f"  {'finished by a resumed run' if run['resumed'] else 'written'} on {run['device']} " \
           f"in {elapsed:.1f} s"
    if elapsed > 0 and not run["resumed"]:
        line += f" ({run['audio_s'] / elapsed:.0f}x real time)"
    if run["ranks"] > 1:
        line += f" by {run['ranks']} ranks"
    line += f", batch size {run['batch_size']}"
    return [line] + (["  " + summary(run["stage_s"], elapsed)] if elapsed > 0 else [])


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
