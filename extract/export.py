"""Write a finished store out in a toolkit's own layout, so its recipe trains unchanged.

fastpitch: NVIDIA DeepLearningExamples FastPitch, as prepare_dataset.py leaves it:
    DIR/mels/<id>.pt    torch.save of a [n_mels, T] float32 tensor
    DIR/pitch/<id>.pt   torch.save of a [1, T] float32 tensor (Hz, 0 when unvoiced)
    DIR/filelist.txt    mels/<id>.pt|pitch/<id>.pt|text, for --load-mel-from-disk, plus
                        |<speaker number> when the corpus has speakers (DIR/speakers.txt:
                        <number>|<name> lines)
    train.py's --pitch-mean, --pitch-std and --n-speakers: fastpitch_train_flags gives them
nemo: NVIDIA NeMo's feature layout (scripts/dataset_processing/tts/compute_features.py and
compute_feature_stats.py), with the dataset's wavs/ folder as NeMo's audio_dir:
    DIR/<feature>/<id>.npy   mel_spec [n_mels, T], pitch [T], voiced_mask [T], energy [T]
    DIR/feature_stats.json   pitch and energy mean and std over voiced frames (std with
                             ddof=1, as torch.std), under "default" and per speaker; NaN
                             where torch gives NaN (fewer than 2 voiced frames)
    DIR/manifest.json        one JSON line per utterance: audio_filepath (relative to wavs/),
                             text, duration, speaker when the corpus has speakers
    DIR/speakers.json        with speakers: name -> index, as create_speaker_map.py writes it
                             (TextToSpeechDataset's speaker_path)
coqui: Coqui TTS's F0 cache (TTS/tts/datasets/dataset.py F0Dataset), for `f0_cache_path`:
    DIR/<name>_pitch.npy     f0 [T] (Hz, 0 when unvoiced); <name> is Coqui's
                             string2filename(f"{dataset_name}#wavs/<id>"), what its ljspeech
                             formatter names the file
    DIR/pitch_stats.npy      {"mean", "std"} as F0Dataset.precompute computes them: over the
                             nonzero f0 after its collate truncates them to whole Hz
                             (torch.LongTensor); a pickled dict, as Coqui saves and loads it

Ids become file names; an id that would land outside DIR is refused, and so is a DIR inside
the store.
"""

from __future__ import annotations

import base64
import io
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from extract.loader import FeatureStore
from extract.progress import Progress

RECIPE_PRESETS = {"fastpitch": "dle-fastpitch", "nemo": "nemo-fastpitch",
                  "coqui": "coqui-fastpitch"}
EXPORTED_FEATURES = {"fastpitch": ["mel", "f0"], "nemo": ["mel", "f0", "voiced", "energy"],
                     "coqui": ["f0"]}


class ExportError(ValueError):
    """The export cannot be written as asked."""


def open_for_export(store_path: str | Path, target: str) -> FeatureStore:
    """The store at `store_path`, opened to read what `target`'s layout needs."""
    if target not in RECIPE_PRESETS:
        raise ExportError(f"--to must be one of {sorted(RECIPE_PRESETS)}, got {target!r}")
    return FeatureStore(store_path, mel_layout="bins_first", features=EXPORTED_FEATURES[target])


def export_store(store: str | Path | FeatureStore, target: str, out_dir: str | Path,
                 overwrite: bool = False, dataset_name: str = "",
                 show_progress: bool = False) -> int:
    """Export every utterance of the store (a path, or `open_for_export`'s store for `target`)
    to `out_dir` in `target`'s layout; return the count. `dataset_name`: Coqui's
    BaseDatasetConfig.dataset_name, part of its cache file names."""
    if not isinstance(store, FeatureStore):
        store = open_for_export(store, target)
    elif store.mel_layout != "bins_first" or set(EXPORTED_FEATURES[target]) - set(store.features):
        raise ValueError(f"open the store with open_for_export(path, {target!r})")
    out_dir = Path(out_dir)
    if out_dir.resolve().is_relative_to(store.path.resolve()):
        raise ExportError(f"{out_dir} is inside the store {store.path}; export to a folder "
                          "outside it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder; name a folder to export into")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ExportError(f"{out_dir} is not empty; pass --overwrite to write into it")
    root = out_dir.resolve()
    for utt_id in store.ids:
        if not (root / utt_id).resolve().is_relative_to(root):
            raise ExportError(f"utterance id {utt_id!r} would be written outside {out_dir}")
    utterances = _each_utterance(store, show_progress)
    try:
        if target == "coqui":
            export_coqui(store, utterances, out_dir, dataset_name)
        else:
            (export_fastpitch if target == "fastpitch" else export_nemo)(store, utterances,
                                                                         out_dir)
    except OSError as e:
        raise ExportError(f"cannot write the export to {out_dir}: {e.strerror or e} "
                          f"({e.filename or out_dir})") from e
    return len(store)


def _each_utterance(store: FeatureStore, show_progress: bool) -> Iterator[tuple[int, str]]:
    """(index, id) of every utterance, with a progress line."""
    seconds = store.lengths * store.config["hop_length"] / store.config["sample_rate"]
    progress = Progress(len(store), float(seconds.sum()), enabled=show_progress,
                        label="exporting")
    for i, utt_id in enumerate(store.ids):
        yield i, utt_id
        progress.update(1, float(seconds[i]))
    progress.close()


def export_fastpitch(store: FeatureStore, utterances: Iterator[tuple[int, str]],
                     out_dir: Path) -> None:
    numbers = speaker_numbers(store)
    if numbers:
        _write(out_dir / "speakers.txt",
               "".join(f"{n}|{name}\n" for name, n in numbers.items()).encode())
    lines = []
    for i, utt_id in utterances:
        item = store[i]
        _write(out_dir / "mels" / f"{utt_id}.pt", _pt(item["mel"].clone()))
        _write(out_dir / "pitch" / f"{utt_id}.pt", _pt(item["f0"][None].clone()))
        speaker = f"|{numbers[item['speaker']]}" if numbers else ""
        lines.append(f"mels/{utt_id}.pt|pitch/{utt_id}.pt|{item['text']}{speaker}")
    _write(out_dir / "filelist.txt", ("\n".join(lines) + "\n").encode())


def speaker_numbers(store: FeatureStore) -> dict[str, int]:
    """Integer speaker ids, the names in sorted order (as NeMo's create_speaker_map.py numbers
    them); empty when the store has no speakers."""
    return {name: n for n, name in enumerate(sorted(set(store.speakers or ())))}


def fastpitch_train_flags(store: FeatureStore) -> str:
    """The flags of FastPitch's train.py for this store: the f0 statistics that normalise its
    pitch targets (its defaults are LJSpeech's: 214.72203 and 65.72038), and --n-speakers."""
    stats = store.stats
    if not stats["f0_voiced_frames"]:
        return "the store has no voiced frame: FastPitch's pitch statistics are undefined"
    speakers = len(speaker_numbers(store))
    return (f"train with FastPitch's --pitch-mean {stats['f0_mean']:.5f} --pitch-std "
            f"{stats['f0_std']:.5f}" + (f" --n-speakers {speakers}" if speakers else "") +
            " (f0 over this store's voiced frames; its defaults are LJSpeech's)")


def export_nemo(store: FeatureStore, utterances: Iterator[tuple[int, str]],
                out_dir: Path) -> None:
    seconds_per_frame = store.config["hop_length"] / store.config["sample_rate"]
    manifest = []
    for i, utt_id in utterances:
        item = store[i]
        for name, value in (("mel_spec", item["mel"]), ("pitch", item["f0"]),
                            ("voiced_mask", item["voiced"]), ("energy", item["energy"])):
            _write(out_dir / name / f"{utt_id}.npy", _npy(value.numpy()))
        entry = {"audio_filepath": store.audio_files[i], "text": item["text"],
                 "duration": round(len(item["f0"]) * seconds_per_frame, 3)}
        if "speaker" in item:
            entry["speaker"] = item["speaker"]
        manifest.append(json.dumps(entry, ensure_ascii=False))
    _write(out_dir / "manifest.json", ("\n".join(manifest) + "\n").encode())
    if store.speakers:
        _write(out_dir / "speakers.json", json.dumps(speaker_numbers(store), indent=4).encode())
    groups = {"default": store.stats, **store.stats.get("speakers", {})}
    stats = {name: _nemo_stats(values) for name, values in groups.items()}
    _write(out_dir / "feature_stats.json", json.dumps(stats, indent=4).encode())
    few = [name for name, values in groups.items() if values["f0_voiced_frames"] < 2]
    if few:
        print(f"note: {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than 2 voiced "
              "frames, so feature_stats.json gives NaN for the std (and for the mean without "
              "any), as compute_feature_stats.py does; NeMo's normalisation zeroes unvoiced "
              "frames but turns a voiced frame of theirs into NaN", file=sys.stderr)


def _nemo_stats(s: dict) -> dict:
    """compute_feature_stats.py's entry: means, and torch.std's unbiased std (from ours, ddof=0);
    NaN where torch gives NaN (no voiced frame; one for the std)."""
    n = s["f0_voiced_frames"]

    def std(value):
        return value * math.sqrt(n / (n - 1)) if n >= 2 else math.nan

    def mean(value):
        return value if n else math.nan

    return {"pitch_mean": mean(s["f0_mean"]), "pitch_std": std(s["f0_std"]),
            "energy_mean": mean(s["energy_voiced_mean"]),
            "energy_std": std(s["energy_voiced_std"])}


def export_coqui(store: FeatureStore, utterances: Iterator[tuple[int, str]], out_dir: Path,
                 dataset_name: str) -> None:
    if not store.stats["f0_voiced_frames"]:
        raise ExportError("the store has no voiced frame, so no pitch statistics for Coqui")
    count, total, squares = 0, 0, 0       # of the whole-Hz f0, exactly, in Python ints
    for i, utt_id in utterances:
        f0 = store.frames("f0", i)
        _write(out_dir / f"{coqui_file_name(dataset_name, utt_id)}_pitch.npy", _npy(f0))
        whole_hz = f0.astype(np.int64)
        whole_hz = whole_hz[whole_hz != 0]
        count += len(whole_hz)
        total += int(whole_hz.sum())
        squares += int((whole_hz * whole_hz).sum())
    mean = total / count
    std = math.sqrt(max(squares * count - total * total, 0)) / count
    _write(out_dir / "pitch_stats.npy",
           _npy(np.array({"mean": np.float64(mean), "std": np.float64(std)}, dtype=object),
                allow_pickle=True))


def coqui_file_name(dataset_name: str, utt_id: str) -> str:
    """Coqui's string2filename of its audio_unique_name for wavs/<id>.wav."""
    return base64.urlsafe_b64encode(f"{dataset_name}#wavs/{utt_id}".encode()).decode()


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _pt(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    """`data` into the file `path`, its folder created; an OSError names the file. One checked
    write: np.save and torch.save to a path can lose a failed flush (a full disk) silently or
    report it without the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_bytes(data)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
