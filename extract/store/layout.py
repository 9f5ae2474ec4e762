"""The store's layout: array names, shapes, chunking and the completion marker.

Shared by the writer and the loader; imports only numpy. docs/FORMAT.md is the prose version.
"""

from __future__ import annotations

from pathlib import Path

FORMAT_VERSION = 4
ATTRS_KEY = "tts_extract"          # group attribute holding everything the job records

CHUNK_FRAMES = 1024                # one utterance touches one or two chunks
SHARD_FRAMES = 16 * CHUNK_FRAMES   # the unit a writer owns; about 3 minutes at 86 frames/s

# name -> (dtype, trailing shape key, dimension names)
FRAME_ARRAYS = {
    "mel": ("float32", "n_mels", ("frame", "mel")),
    "f0": ("float32", None, ("frame",)),
    "voiced": ("bool", None, ("frame",)),
    "voiced_prob": ("float32", None, ("frame",)),
    "energy": ("float32", None, ("frame",)),
}
OPTIONAL_FRAME_ARRAYS = {          # written only by presets that ask for them
    "linear": ("float32", "n_freqs", ("frame", "freq")),
}
ABSENT_CHUNK = 2**64 - 1           # a shard index's (offset, nbytes) for a chunk not stored
OFFSETS = "offsets"                # int64 [utterances + 1]
SPANS = "spans"                    # int64 [utterances, 2]: samples the frames cover
PROGRESS = "progress"              # while a job runs: one JSON file per finished shard
UTTERANCE_GROUP = "utterances"     # string arrays, one value per utterance
UTTERANCE_FIELDS = ("id", "text", "audio")     # audio: the file, relative to the dataset's wavs/
OPTIONAL_UTTERANCE_FIELDS = ("speaker",)       # written when the corpus names speakers


def utterance_fields(group) -> dict[str, list[str]]:
    """The string arrays of a store's `utterances` group that it has (a zarr group, or any
    mapping of name -> array), each read whole: field name -> one string per utterance."""
    return {name: [str(v) for v in group[name][:]]
            for name in (*UTTERANCE_FIELDS, *OPTIONAL_UTTERANCE_FIELDS) if name in group}


def frame_arrays(widths: dict[str, int]) -> dict[str, tuple[str, tuple[int, ...], tuple]]:
    """name -> (dtype, trailing shape, dimension names) for a store whose trailing sizes are
    `widths` (e.g. {"n_mels": 80}); optional arrays are included when their size is given."""
    arrays = {}
    for name, (dtype, trailing, dims) in {**FRAME_ARRAYS, **OPTIONAL_FRAME_ARRAYS}.items():
        if name in FRAME_ARRAYS or trailing in widths:
            arrays[name] = (dtype, (widths[trailing],) if trailing else (), dims)
    return arrays


def marked_shards(store: Path) -> set[int]:
    """The shards an unfinished store's writers have finished: those with a progress marker
    (`marker_file`'s names; others are not markers)."""
    return {int(p.stem) for p in (Path(store) / PROGRESS).glob("*.json")
            if p.stem.isdigit() and p.name == marker_file(store, int(p.stem)).name}


def marker_file(store: Path, shard: int) -> Path:
    """The progress marker of a finished shard."""
    return Path(store) / PROGRESS / f"{shard:08d}.json"


def shard_file(array_dir: Path, shard: int, ndim: int, separator: str = "/") -> Path:
    """The file holding shard `shard` of an array sharded along its first axis only (Zarr v3's
    default chunk key encoding: c/<shard>/0 for 2-D arrays, c/<shard> for 1-D ones)."""
    return Path(array_dir) / separator.join(["c", str(shard)] + ["0"] * (ndim - 1))
