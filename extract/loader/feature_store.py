"""`FeatureStore`: random access to a finished store's utterances for training loops.

Imports only numpy, zarr and torch (any torch >= 2.4). Safe in DataLoader workers under fork
and spawn: files are opened lazily, per process, and nothing open is pickled.

>>> store = FeatureStore("features.zarr")            # doctest: +SKIP
>>> item = store["LJ001-0001"]; item["mel"].shape    # doctest: +SKIP
torch.Size([832, 80])
"""

from __future__ import annotations

import functools
import operator
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from multiprocessing.context import get_spawning_popen
from pathlib import Path

import numpy as np
import torch
import zarr

from extract.loader.describe import SHOWN_REJECTIONS, describe_store
from extract.loader.record import record_problem
from extract.loader.shard_reader import (COPIED_IN_PART, REEXTRACT, ShardReader,
                                         StoreFormatError, StoreVersion, raw_layout)
from extract.progress import format_bytes
from extract.store.layout import (ATTRS_KEY, FORMAT_VERSION, FRAME_ARRAYS, OFFSETS,
                                  OPTIONAL_FRAME_ARRAYS, OPTIONAL_UTTERANCE_FIELDS, SPANS,
                                  UTTERANCE_FIELDS, UTTERANCE_GROUP, marked_shards,
                                  utterance_fields)
from extract.store.lock import running_owner

FIELD_ARRAYS = tuple(f"{UTTERANCE_GROUP}/{name}"
                     for name in (*UTTERANCE_FIELDS, *OPTIONAL_UTTERANCE_FIELDS))
REQUIRED_ARRAYS = (*FRAME_ARRAYS, OFFSETS, SPANS, *FIELD_ARRAYS[:len(UTTERANCE_FIELDS)])
STORE_ARRAYS = (*REQUIRED_ARRAYS, *OPTIONAL_FRAME_ARRAYS, *FIELD_ARRAYS[len(UTTERANCE_FIELDS):])


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable; else the
    free pages), or None where neither is known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def shared_memory_free() -> int | None:
    """Bytes free in /dev/shm, where torch puts tensors it shares between processes on Linux
    (64 MB in a Docker container by default), or None where there is no /dev/shm."""
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


class FeatureStore:
    """Utterances of a tts-extract store, by position or id.

    `store[i]` / `store["id"]` -> {"id", "text", "mel" [T, n_mels] float32, "f0" [T] float32,
    "voiced" [T] bool, "voiced_prob" [T] float32, "energy" [T] float32} (torch tensors), plus
    "speaker" when the corpus names speakers and "linear" when the preset stores it (of the
    frame arrays, only those `features` names, when it is given).
    `spans[i]` is the [start, end) of the samples (at config["sample_rate"], after resampling)
    that utterance i's frames cover: the whole file unless the preset trims silence.
    `audio_files[i]` is its audio file, relative to the dataset's wavs/ folder. `ids`, `texts`,
    `audio_files` and `speakers` (None without speakers) are tuples, one entry per utterance.
    `frame_bytes` is the size of the frame arrays it reads: on disk (uncompressed) and in memory;
    `stored_bytes` that of all the store's frame arrays. `field_names`: its utterances' string
    fields (id, text, audio, speaker where the corpus names speakers). Items are the caller's to
    change; threads may share a store.

    in_memory: read the arrays at open and serve from RAM. DataLoader workers started by fork
        share those pages with the main process (copy-on-write, never written); when the first
        worker is started by spawn or forkserver, the arrays move to shared memory, which every
        such worker maps (where /dev/shm lacks the room, a warning, and each of them reads its
        own copy). MemoryError, naming the sizes, where the frames are larger than the memory
        available (at open, or in a worker reading its own copy).
    mel_layout: "frames_first" ([T, n_mels]) or "bins_first" ([n_mels, T], as NeMo, FastPitch
        and HiFi-GAN models take it); applies to linear too.
    normalize: f0 becomes (f0 - mean) / std on voiced frames and 0 elsewhere, energy
        (energy - mean) / std, with mean and std over voiced frames, per speaker when the store
        has speakers (stats["speakers"]; the corpus's for a speaker with no voiced frame), else
        over the corpus.
    features: the frame arrays to read and serve (default: all the store has, `array_names`),
        e.g. ("mel",) for a vocoder; in_memory then holds only those.
    """

    def __init__(self, path: str | Path, in_memory: bool = False,
                 mel_layout: str = "frames_first", normalize: bool = False,
                 features: Sequence[str] | None = None):
        if mel_layout not in ("frames_first", "bins_first"):
            raise ValueError(f"mel_layout must be 'frames_first' or 'bins_first', "
                             f"got {mel_layout!r}")
        self.path = Path(path).absolute()      # reads go on after the caller changes directory
        self.in_memory = in_memory
        self.mel_layout = mel_layout
        self.normalize = normalize
        self._version = StoreVersion(self.path)     # before anything is read
        group = self._open_group()
        record = group.attrs.get(ATTRS_KEY)
        if not isinstance(record, dict):
            raise StoreFormatError(f"{self.path} is a Zarr group but not a tts-extract store")
        if record.get("format_version") != FORMAT_VERSION:
            raise StoreFormatError(f"{self.path} has format version "
                                   f"{record.get('format_version')!r}; this tts-extract reads "
                                   f"version {FORMAT_VERSION}")
        if not record.get("complete") and (owner := running_owner(self.path)):
            raise StoreFormatError(f"{self.path} is incomplete: a job is still writing it "
                                   f"({owner}{self._shards_written(group)}); open it once that "
                                   "job has finished")
        if not record.get("complete"):
            raise StoreFormatError(f"{self.path} is incomplete: the job that wrote it did not "
                                   f"finish{self._shards_written(group)}; rerun the same "
                                   "`tts-extract run` with --resume to finish it")
        problem = record_problem(record)
        if problem:
            raise StoreFormatError(f"{self.path}: its {ATTRS_KEY} attribute is damaged: {problem}")
        self.config: dict = record["config"]
        self.stats: dict = record["stats"]
        self.attrs: dict = record
        arrays = self._open_arrays(group)
        missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
        if missing:
            raise StoreFormatError(f"{self.path} lacks array(s) {missing}")
        self.array_names = [n for n in (*FRAME_ARRAYS, *OPTIONAL_FRAME_ARRAYS) if n in arrays]
        self.features = self._chosen(features, normalize)
        self.offsets = self._index_read(OFFSETS, arrays[OFFSETS]).astype(np.int64)
        self.spans = self._index_read(SPANS, arrays[SPANS]).astype(np.int64)
        fields = utterance_fields({name.removeprefix(f"{UTTERANCE_GROUP}/"):
                                   self._index_read(name, arrays[name])
                                   for name in FIELD_ARRAYS if name in arrays})
        self._check_consistency(arrays, fields)
        self._version.check()       # the index is one store's, not parts of two
        # tuples: shuffling a list of them in place would pair frames with other ids and texts
        self.ids, self.texts, self.audio_files = (tuple(fields[name])
                                                  for name in ("id", "text", "audio"))
        self.speakers = tuple(fields["speaker"]) if "speaker" in fields else None
        self.field_names = list(fields)
        if normalize and self.stats["f0_mean"] is None:
            raise ValueError(f"{self.path} has no voiced frame to normalise by; open it "
                             "without normalize=True")
        self._position = {utt_id: i for i, utt_id in enumerate(self.ids)}
        self._pid: int | None = None
        self._readers: dict = {}
        self._shared: dict | None = None    # in_memory frames in shared memory ({}: no room)
        self.frame_bytes = sum(arrays[name].nbytes for name in self.features)
        self.stored_bytes = sum(arrays[name].nbytes for name in self.array_names)
        if in_memory:
            self._arrays()

    def _chosen(self, features: Sequence[str] | None, normalize: bool) -> list[str]:
        """The frame arrays `features` names, checked against the store's, in store order."""
        if features is None:
            return list(self.array_names)
        if isinstance(features, str) or not features:
            raise ValueError(f"features must name one or more of {self.array_names}, e.g. "
                             f"('mel',), got {features!r}")
        unknown = [name for name in features if name not in self.array_names]
        if unknown:
            raise ValueError(f"{self.path} has no frame array(s) {unknown}; it has "
                             f"{self.array_names}")
        if normalize and "f0" in features and "voiced" not in features:
            raise ValueError("normalize=True sets unvoiced f0 frames to 0, so it needs 'voiced' "
                             "among the features")
        return [name for name in self.array_names if name in features]

    def _open_group(self) -> zarr.Group:
        if not self.path.exists():
            raise StoreFormatError(f"{self.path} does not exist")
        if not (self.path / "zarr.json").is_file():
            raise StoreFormatError(f"{self.path} is not a Zarr store (no zarr.json)")
        try:
            return zarr.open_group(str(self.path), mode="r", zarr_format=3)
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise StoreFormatError(f"{self.path} cannot be opened: {e}") from e

    def _open_arrays(self, group: zarr.Group) -> dict[str, zarr.Array]:
        """The store's arrays that are there, by name (STORE_ARRAYS); a StoreFormatError naming
        the first whose metadata is damaged."""
        arrays = {}
        for name in STORE_ARRAYS:
            try:
                array = group[name]
            except KeyError:
                continue
            except Exception as e:       # zarr's many kinds of error for a damaged zarr.json
                raise StoreFormatError(f"{self.path}: the metadata of {name} cannot be read "
                                       f"({type(e).__name__}: {e}); {REEXTRACT}") from e
            if not isinstance(array, zarr.Array):
                raise StoreFormatError(f"{self.path}: {name} is not an array; {REEXTRACT}")
            arrays[name] = array
        return arrays

    def _shards_written(self, group: zarr.Group) -> str:
        """', N of M shards written' for an unfinished store (its writers' progress markers),
        or '' where its log-mel array is not there yet."""
        try:
            mel = group["mel"]
            total = -(-mel.shape[0] // mel.shards[0])
        except (KeyError, TypeError):
            return ""
        return f", {len(marked_shards(self.path))} of {total} shards written"

    def _check_consistency(self, arrays: dict[str, zarr.Array],
                           fields: dict[str, list[str]]) -> None:
        n_frames = arrays["mel"].shape[0]
        lengths = np.diff(self.offsets)
        if len(self.offsets) < 1 or self.offsets[0] != 0 or (lengths < 0).any() \
                or self.offsets[-1] != n_frames:
            raise StoreFormatError(f"{self.path}: offsets are not monotonic from 0 to the "
                                   f"{n_frames} stored frames")
        if any(len(values) != len(lengths) for values in fields.values()):
            counts = ", ".join(f"{len(values)} {UTTERANCE_GROUP}/{name}"
                               for name, values in fields.items())
            raise StoreFormatError(f"{self.path}: {counts} and {len(lengths)} utterances (from "
                                   f"{OFFSETS}) disagree")
        twice = [utt_id for utt_id, n in Counter(fields["id"]).items() if n > 1]
        if twice:
            raise StoreFormatError(f"{self.path}: utterance id(s) {twice[:5]} appear more than "
                                   "once")
        unknown = sorted(set(fields.get("speaker", ())) - set(self.stats.get("speakers", ())))
        if unknown:
            raise StoreFormatError(f"{self.path}: speaker(s) {unknown[:5]} have no statistics "
                                   "(stats.speakers)")
        if self.spans.shape != (len(lengths), 2) or (self.spans[:, 0] < 0).any() \
                or (self.spans[:, 1] < self.spans[:, 0]).any():
            raise StoreFormatError(f"{self.path}: spans must hold {len(lengths)} [start, end) "
                                   "pairs with 0 <= start <= end")
        for name in self.array_names:
            if arrays[name].shape[0] != n_frames:
                raise StoreFormatError(f"{self.path}: {name} has {arrays[name].shape[0]} frames, "
                                       f"mel has {n_frames}")
        if arrays["mel"].shape[1:] != (self.config["n_mels"],):
            raise StoreFormatError(f"{self.path}: mel has shape {arrays['mel'].shape}, not "
                                   f"(frames, config.n_mels = {self.config['n_mels']})")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        """<FeatureStore PATH: N utterances, F frames, preset NAME[, options not at default]>"""
        options = [f"{name}={value!r}" for name, value, default in (
            ("in_memory", self.in_memory, False), ("mel_layout", self.mel_layout, "frames_first"),
            ("normalize", self.normalize, False)) if value != default]
        if self.features != self.array_names:
            options.append(f"features={self.features!r}")
        return (f"<FeatureStore {self.path}: {len(self)} utterances, {int(self.offsets[-1])} "
                f"frames, preset {self.config.get('name')!r}{''.join(', ' + o for o in options)}>")

    def check_config(self, **expected) -> None:
        """Raise ValueError naming every setting in which the store differs from `expected`,
        such as the vocoder's own, so that its mels cannot silently mismatch:

        >>> store.check_config(sample_rate=22050, n_fft=1024, hop_length=256,  # doctest: +SKIP
        ...                    win_length=1024, n_mels=80, fmin=0, fmax=8000)

        Names are the store's config keys (`fmax` is in Hz, also where a toolkit writes None
        for sample_rate / 2); a name the config lacks is an error too."""
        unknown = sorted(set(expected) - set(self.config))
        if unknown:
            raise ValueError(f"{self.path}: the store's config has no {', '.join(unknown)}; "
                             f"it has {', '.join(self.config)}")
        differ = [f"{name} is {self.config[name]!r}, not {value!r}"
                  for name, value in expected.items() if self.config[name] != value]
        if differ:
            raise ValueError(f"{self.path} (preset {self.config.get('name')!r}) does not match: "
                             + "; ".join(differ))

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """Frames per utterance, made once (a loop may index it per utterance), read-only."""
        lengths = np.diff(self.offsets)
        lengths.flags.writeable = False
        return lengths

    def _arrays(self) -> dict:
        """Per-process readers: ShardReader, a zarr array, or an in-memory numpy array (which a
        forked process keeps: it holds no file or thread). Threads may share them; each table of
        readers is whole before threads see it."""
        if self._pid != os.getpid():
            self._readers = {name: reader for name, reader in self._readers.items()
                             if isinstance(reader, np.ndarray)}
            self._pid = os.getpid()
        if not self._readers:
            readers = {}
            free = available_memory() if self.in_memory else None
            if free is not None and self.frame_bytes > free:    # at open, or in a spawned worker
                raise MemoryError(f"{self.path}: in_memory=True needs "
                                  f"{format_bytes(self.frame_bytes)} for its frames, and this "
                                  f"machine has {format_bytes(free)} available; open it without "
                                  "in_memory (its default reads go to the files)")
            group = zarr.open_group(str(self.path), mode="r", zarr_format=3)
            self._version.check()
            for name in self.features:
                array = group[name]
                metadata = array.metadata.to_dict()
                if raw_layout(metadata):
                    reader = ShardReader(self.path / name, metadata, self._version)
                    readers[name] = reader.read(0, array.shape[0]) if self.in_memory else reader
                else:
                    readers[name] = self._zarr_read(name, array) if self.in_memory else array
            self._readers = readers
        return self._readers

    def frames(self, name: str, index: int) -> np.ndarray:
        """Array `name` for utterance `index`, as numpy."""
        if name not in self.features:
            raise KeyError(f"{name!r} is not among the features this store was opened with, "
                           f"{self.features}")
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        reader = self._arrays()[name]
        if isinstance(reader, ShardReader):
            return reader.read(start, stop)
        if isinstance(reader, np.ndarray):      # a copy: a caller may change it in place
            return reader[start:stop].copy()
        return self._zarr_read(name, reader, slice(start, stop))

    def _index_read(self, name: str, array: zarr.Array) -> np.ndarray:
        """A whole index array (offsets, spans, utterances/<field>), every chunk of which the
        job wrote: zarr reads a missing chunk file as fill values (empty texts, zero spans)."""
        missing = array.nchunks - array.nchunks_initialized
        if missing:
            raise StoreFormatError(f"{self.path / name}: {missing} of its {array.nchunks} chunk "
                                   f"file(s) are missing {COPIED_IN_PART}")
        return self._zarr_read(name, array)

    def _zarr_read(self, name: str, array: zarr.Array, rows: slice = slice(None)) -> np.ndarray:
        """Rows of an array through zarr-python, whose errors for a damaged file (a checksum
        that does not match, a chunk cut short) do not name the array."""
        try:
            return np.asarray(array[rows])
        except MemoryError:
            raise
        except Exception as e:     # zarr's and each codec's own kinds (zstd: RuntimeError)
            raise StoreFormatError(f"{self.path / name} cannot be read ({type(e).__name__}: "
                                   f"{e}); {REEXTRACT}") from e

    def index_of(self, utt_id: str) -> int:
        try:
            return self._position[utt_id]
        except KeyError:
            raise KeyError(f"no utterance {utt_id!r} in {self.path}") from None

    def __getitem__(self, key: int | str) -> dict:
        if isinstance(key, str):
            index = self.index_of(key)
        else:
            try:
                index = operator.index(key)     # ints, numpy and torch integers; not floats
            except TypeError:
                raise TypeError("a store is indexed by utterance id (str) or position (int), "
                                f"not {type(key).__name__}") from None
        if not -len(self) <= index < len(self):
            raise IndexError(f"utterance {index} out of range for {len(self)} utterances")
        index %= len(self)
        item = {"id": self.ids[index], "text": self.texts[index]}
        if self.speakers is not None:
            item["speaker"] = self.speakers[index]
        for name in self.features:
            item[name] = torch.from_numpy(self.frames(name, index))
        if self.normalize:
            self._normalize(item)
        if self.mel_layout == "bins_first":
            item["mel_layout"] = "bins_first"
            for name in ("mel", "linear"):
                if name in item:
                    item[name] = item[name].T.contiguous()
        return item

    def _normalize(self, item: dict) -> None:
        s = self.stats["speakers"][item["speaker"]] if "speaker" in item else self.stats
        if s["f0_mean"] is None:        # a speaker without a voiced frame: the corpus's
            s = self.stats
        if "f0" in item:
            item["f0"] = torch.where(item["voiced"],
                                     (item["f0"] - s["f0_mean"]) / max(s["f0_std"], 1e-8), 0.0)
        if "energy" in item:
            item["energy"] = ((item["energy"] - s["energy_voiced_mean"])
                              / max(s["energy_voiced_std"], 1e-8))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_readers"], state["_pid"] = {}, None
        starting_a_process = get_spawning_popen() is not None   # spawn or forkserver
        state["_shared"] = self._shared_frames() if self.in_memory and starting_a_process else None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._shared:
            self._readers = {name: frames.numpy() for name, frames in self._shared.items()}
            self._pid = os.getpid()

    def _shared_frames(self) -> dict:
        """The in_memory arrays as tensors in shared memory, which torch passes to a process it
        starts as handles: moved there on the first call (this process then serves from them
        too); {} where /dev/shm has no room for them."""
        if self._shared is None:
            readers = self._arrays()
            free = shared_memory_free()
            self._shared = {}
            if free is not None and self.frame_bytes > free:
                warnings.warn(f"{self.path}: its frames ({format_bytes(self.frame_bytes)}) do "
                              f"not fit the {format_bytes(free)} free in /dev/shm, so each "
                              "worker started by spawn reads its own copy; give /dev/shm more "
                              "room (docker run --shm-size) or start the workers by fork",
                              stacklevel=3)
            else:       # one array at a time, each copy freed before the next is made
                for name in self.features:
                    self._shared[name] = torch.from_numpy(readers[name]).share_memory_()
                    readers[name] = self._shared[name].numpy()
        return self._shared

    def describe(self, shown_rejections: int | None = SHOWN_REJECTIONS) -> str:
        """What the store holds, with the first `shown_rejections` skipped items (None: all)."""
        return describe_store(self, shown_rejections)
