"""Corpus input: an LJSpeech-style metadata file plus a folder of WAV (or FLAC) files, read
into `Utterance`s.

Accepted metadata lines (one utterance each, fields separated by '|'):

    LJ001-0001|raw text|normalized text     id without extension -> wavs/LJ001-0001.wav
                                            (else .flac, .WAV or .FLAC, the first found)
    llm_intro_0.wav|raw text|               file name; empty normalized field -> raw text
    p225_001|raw text|normalized|p225       an optional fourth field names the speaker

Every audio header is read up front (`extract.input.audio`), so frame counts are known before any
audio is decoded. A bad line or file does not stop the job: it becomes a `Rejection` naming the
metadata line, the file and what is wrong, and the other utterances go ahead.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from extract.input.audio import AudioError, AudioInfo, check_finite, read_audio_info
from extract.progress import Progress

AUDIO_SUFFIXES = (".wav", ".flac")
METADATA_SUFFIXES = (".csv", ".txt", ".tsv", ".list")      # named when metadata.csv is missing
BARE_ID_SUFFIXES = (".wav", ".flac", ".WAV", ".FLAC")     # tried in turn for an id without one
# audio the decoder does not take: named when the metadata or wavs/ has it instead of WAV/FLAC
OTHER_AUDIO = {".mp3": "MP3", ".ogg": "Ogg", ".opus": "Opus", ".m4a": "AAC (m4a)",
               ".aac": "AAC", ".wma": "WMA", ".aif": "AIFF", ".aiff": "AIFF", ".sph": "SPHERE",
               ".webm": "WebM"}
MAX_DURATION_S = 600.0     # default limit; longer files are skipped (--max-duration)
MAX_FIELDS = 4             # id|text|normalized text|speaker
TEXT_CHECKED_BYTES = 4096  # of a metadata file, looked at for binary data
# (leading bytes, what the file is) named when a metadata file is not text
NOT_TEXT_KINDS = ((b"RIFF", "a WAV file"), (b"RF64", "a WAV file"), (b"fLaC", "a FLAC file"),
                  (b"OggS", "an Ogg file"), (b"ID3", "an ID3-tagged audio file"),
                  (b"PAR1", "a Parquet file"), (b"\x1f\x8b", "a gzip archive"),
                  (b"BZh", "a bzip2 archive"), (b"PK\x03\x04", "a zip archive"),
                  (b"\xfd7zXZ", "an xz archive"))


class CorpusError(ValueError):
    """The dataset path or its metadata is unusable."""


@dataclass(frozen=True)
class Utterance:
    index: int          # position in the metadata file (and in the store)
    id: str
    text: str
    path: Path
    line_number: int
    audio: AudioInfo
    speaker: str = ""
    span: tuple[int, int] | None = None   # [start, end) samples at the preset's rate that the
    #                                       features cover: set by silence trimming
    #                                       (extract.plan.trim_silence), else by extract.plan

    @property
    def duration_s(self) -> float:
        return self.audio.num_samples / self.audio.sample_rate


@dataclass(frozen=True)
class Rejection:
    line_number: int
    entry: str          # the id field, or the start of an unparsable line
    reason: str         # names the file where there is one

    def __str__(self) -> str:
        return f"line {self.line_number} ({self.entry}): {self.reason}"

    def to_dict(self) -> dict:
        return {"line": self.line_number, "entry": self.entry, "reason": self.reason}

    @classmethod
    def from_dict(cls, record: dict) -> Rejection:
        return cls(record["line"], record["entry"], record["reason"])


@dataclass(frozen=True)
class Corpus:
    root: Path
    metadata: Path
    utterances: list[Utterance]
    rejected: list[Rejection]

    @property
    def duration_s(self) -> float:
        return sum(u.duration_s for u in self.utterances)


def find_metadata(dataset: str | Path) -> tuple[Path, Path]:
    """(metadata file, audio folder) for a dataset folder or a path to its metadata file; the
    folder's path is absolute, through the dataset folder's real path (a `wavs` link is kept)."""
    dataset = Path(dataset)
    if dataset.is_dir():
        metadata = dataset / "metadata.csv"
        if not metadata.is_file():
            listed = sorted(p.name for p in dataset.iterdir()
                            if p.suffix.lower() in METADATA_SUFFIXES and p.is_file())
            parent = dataset.resolve().parent
            if not listed and _holds_audio(dataset) and (parent / "metadata.csv").is_file():
                raise CorpusError(f"{dataset} is an audio folder; pass the dataset folder above "
                                  f"it, {parent}, which has metadata.csv")
            raise CorpusError(f"{dataset} has no metadata.csv; pass the metadata file itself "
                              "if it has another name" +
                              (f" (here: {', '.join(listed[:5])})" if listed else ""))
    elif dataset.is_file():
        metadata = dataset
    else:
        raise CorpusError(f"dataset {dataset} does not exist")
    if problem := _not_text(metadata):
        raise CorpusError(f"{metadata} {problem}")
    wavs = metadata.parent.resolve() / "wavs"
    if wavs.is_symlink() and not wavs.exists():
        raise CorpusError(f"{wavs} is a link to {os.readlink(wavs)}, which does not exist")
    if not wavs.is_dir():
        audio = [d.name for d in sorted(metadata.parent.iterdir()) if _holds_audio(d)]
        raise CorpusError(f"no wavs/ folder next to {metadata}" + (
            f"; {audio[0]}/ holds audio: name it wavs, or link it (ln -s {audio[0]} "
            f"{metadata.parent / 'wavs'})" if audio else ""))
    return metadata, wavs


def _not_text(metadata: Path) -> str | None:
    """What is wrong with `metadata` when its start is not text (UTF-16, audio, an archive,
    other binary data), else None (also when it cannot be read: parse_metadata says so)."""
    try:
        with open(metadata, "rb") as f:
            head = f.read(TEXT_CHECKED_BYTES)
    except OSError:
        return None
    even_nul, odd_nul = (head[k::2].count(0) / max(len(head[k::2]), 1) for k in (0, 1))
    utf16 = ("UTF-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else
             "UTF-16LE" if odd_nul - even_nul > 0.6 else
             "UTF-16BE" if even_nul - odd_nul > 0.6 else None)
    if utf16:
        return (f"is {utf16} text; re-encode it as UTF-8 (iconv -f {utf16} -t UTF-8 {metadata} > "
                "utf8.csv, then move utf8.csv over it)")
    controls = sum(b < 32 and b not in b"\t\n\r" for b in head)    # none in text lines
    kind = next((k for start, k in NOT_TEXT_KINDS if head.startswith(start)), None)
    if controls < (1 if kind else max(16, len(head) // 10)):
        return None
    kind = kind or "binary data"
    unpack = "unpack it, then " if kind.endswith("archive") else ""
    return (f"is {kind}, not a metadata file of text lines; {unpack}pass the dataset folder "
            "(metadata.csv and wavs/) or its metadata file")


def _holds_audio(folder: Path, looked_at: int = 100) -> bool:
    """Whether one of the first `looked_at` entries of `folder` is a WAV or FLAC file."""
    try:
        with os.scandir(folder) as entries:
            return any(entry.name.lower().endswith(AUDIO_SUFFIXES)
                       for entry in itertools.islice(entries, looked_at))
    except OSError:             # not a folder, or not readable
        return False


def parse_metadata(metadata: Path) -> tuple[list[tuple[int, str, str, str]], list[Rejection]]:
    """(line number, id field, text, speaker) per usable non-blank line, and a rejection per
    unusable one; text is the normalized field, or the raw one when that is empty or absent."""
    try:
        raw = metadata.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read {metadata}: {e.strerror}") from e
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    rows, rejected = [], []
    for number, encoded in enumerate(raw.splitlines(), start=1):
        try:
            line = encoded.decode("utf-8")
        except UnicodeDecodeError as e:
            rejected.append(Rejection(number, repr(encoded[:40])[2:-1],
                                      f"not valid UTF-8 (byte {e.start}); re-encode the "
                                      "metadata as UTF-8"))
            continue
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0].strip():
            rejected.append(Rejection(number, line[:40], _not_a_metadata_line(line)))
            continue
        if len(fields) > MAX_FIELDS:
            rejected.append(Rejection(number, fields[0].strip()[:40],
                                      f"{len(fields)} '|'-separated fields, at most "
                                      f"{MAX_FIELDS} (id|text|normalized text|speaker): a '|' "
                                      "inside the text? remove it from the metadata line"))
            continue
        normalized = fields[2].strip() if len(fields) > 2 else ""
        speaker = fields[3].strip() if len(fields) > 3 else ""
        rows.append((number, fields[0].strip(), normalized or fields[1].strip(), speaker))
    return rows, rejected


def _not_a_metadata_line(line: str) -> str:
    """Why a line without an id and a text field is skipped, with what it looks like instead."""
    reason = "expected 'id|text[|normalized text]'"
    if line.lstrip().startswith("{"):
        return (f"{reason}, not JSON (a NeMo manifest?): list the audio files as "
                "'name.wav|text|' lines in metadata.csv, next to wavs/")
    for char, name in (("\t", "tabs"), (",", "commas")):
        if "|" not in line and char in line:
            return f"{reason}: fields are separated by |, not {name}"
    return reason


def resolve_audio(wavs: Path, id_field: str) -> tuple[str, Path]:
    """(utterance id, audio path) for an id field: a file name, or an id whose file is the
    first of <id>.wav, .flac, .WAV and .FLAC that exists. `..` parts are resolved by name, and
    an id that leaves `wavs` that way (or is absolute) is refused; symbolic links inside `wavs`
    are the dataset's own and are followed."""
    if "\x00" in id_field:
        raise CorpusError(f"id {id_field!r} contains a NUL character, which no file name can")
    if id_field.lower().endswith(AUDIO_SUFFIXES):
        utt_id, name = id_field.rsplit(".", 1)[0], id_field
    else:
        utt_id, name = id_field, f"{id_field}.wav"
    path = Path(os.path.normpath(wavs / name))
    if not path.is_relative_to(wavs):
        raise CorpusError(f"id {id_field!r} points outside {wavs}")
    if name != id_field:
        candidates = [path.with_suffix(suffix) for suffix in BARE_ID_SUFFIXES]
        try:
            found = next((c for c in candidates if c.exists()), None)
            other = None if found else _other_audio(path.with_suffix(""))
        except OSError as e:            # e.g. a name too long for the filesystem
            raise CorpusError(f"{path}: cannot read ({e.strerror})") from None
        if other is not None:
            wav = f"{other.stem}.wav"
            listed = f" and list {wav} in the metadata" if other.name == id_field else ""
            raise CorpusError(f"{other}: {OTHER_AUDIO[other.suffix.lower()]} audio is not "
                              f"supported; convert it to WAV or FLAC (e.g. ffmpeg -i "
                              f"{other.name} {wav}){listed}")
        path = found or path
    if id_field.startswith("wavs/") and not path.exists():
        raise CorpusError(f"{path}: file not found; ids are relative to wavs/, so drop the "
                          "leading wavs/ from the metadata's ids")
    return utt_id, path


def _other_audio(stem: Path) -> Path | None:
    """Audio in a format the decoder does not take where an id points: the id's own name
    (`x.mp3`, whether or not it exists), or a file beside where its WAV would be (`x`, with only
    `x.mp3` there)."""
    if stem.suffix.lower() in OTHER_AUDIO:
        return stem
    suffixes = [*OTHER_AUDIO, *(suffix.upper() for suffix in OTHER_AUDIO)]
    return next((f for f in (stem.with_name(stem.name + suffix) for suffix in suffixes)
                 if f.exists()), None)


def load_corpus(dataset: str | Path, limit: int | None = None,
                show_progress: bool = False) -> Corpus:
    """Read the metadata (the first `limit` lines that name an utterance) and every audio header,
    with a progress line if that takes more than a second and `show_progress`.

    Unusable lines and files become rejections; raise `CorpusError` only when the dataset
    itself is unusable or no utterance is left."""
    metadata, wavs = find_metadata(dataset)
    rows, rejected = parse_metadata(metadata)
    rows = rows[:limit]
    if limit is not None and rows:
        rejected = [r for r in rejected if r.line_number < rows[-1][0]]
    utterances, seen = [], {}
    progress = Progress(len(rows), None, enabled=show_progress, label="reading audio headers",
                        unit="files", delay_s=1.0)
    for number, id_field, text, speaker in rows:
        progress.update(1)
        try:
            utt_id, path = resolve_audio(wavs, id_field)
            if utt_id in seen:
                raise CorpusError(f"duplicate id {utt_id!r} (first on line {seen[utt_id]})")
            seen[utt_id] = number
            info = read_audio_info(path)
            check_finite(path, info)
        except (CorpusError, AudioError) as e:
            rejected.append(Rejection(number, id_field, str(e)))
            continue
        utterances.append(Utterance(len(utterances), utt_id, text, path, number, info, speaker))
    rejected.sort(key=lambda r: r.line_number)
    if not utterances:
        shown = "\n  ".join(str(r) for r in rejected[:20])
        raise CorpusError(f"{metadata} lists no usable utterance" +
                          (f":\n  {shown}" if shown else ""))
    return Corpus(wavs.parent, metadata, utterances, rejected)


def manifest_sha256(root: Path, utterances: list[Utterance]) -> str:
    """Hash of what a store holds: ids, texts, audio paths relative to the dataset, file sizes
    and speakers, in order."""
    rows = [[u.id, u.text, name, u.audio.file_size, u.speaker]
            for u, name in zip(utterances, relative_names(utterances, root))]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def relative_names(utterances: list[Utterance], folder: Path) -> list[str]:
    """Each utterance's audio file relative to `folder`, the dataset folder or its wavs/, which
    holds every one (resolve_audio's paths are normalised and absolute): as Path.relative_to
    gives it, 20 times faster, for corpora of a million files."""
    prefix = os.path.join(str(folder), "")
    return [str(u.path)[len(prefix):] for u in utterances]
