"""Corpus input: an LJSpeech-style metadata file plus a folder of WAVs, read into `Utterance`s.

Accepted metadata lines (one utterance each, fields separated by '|'):

    LJ001-0001|raw text|normalized text     id without extension -> wavs/LJ001-0001.wav
    llm_intro_0.wav|raw text|               file name; empty normalized field -> raw text

Every WAV header is read up front (`extract.input.wav`), so frame counts are known before any
audio is decoded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from extract.input.wav import WavError, WavInfo, read_wav_info

AUDIO_SUFFIXES = (".wav",)


class CorpusError(ValueError):
    """The dataset path or its metadata is unusable."""


@dataclass(frozen=True)
class Utterance:
    index: int          # position in the metadata file (and in the store)
    id: str
    text: str
    path: Path
    line_number: int
    wav: WavInfo

    @property
    def duration_s(self) -> float:
        return self.wav.num_samples / self.wav.sample_rate


@dataclass(frozen=True)
class Corpus:
    root: Path
    metadata: Path
    utterances: list[Utterance]

    @property
    def duration_s(self) -> float:
        return sum(u.duration_s for u in self.utterances)

    def manifest_sha256(self) -> str:
        """Hash of what the job reads: ids, texts, relative paths and file sizes, in order."""
        rows = [[u.id, u.text, u.path.relative_to(self.root).as_posix(), u.wav.file_size]
                for u in self.utterances]
        return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def find_metadata(dataset: str | Path) -> tuple[Path, Path]:
    """(metadata file, audio folder) for a dataset folder or a path to its metadata file."""
    dataset = Path(dataset)
    if dataset.is_dir():
        metadata = dataset / "metadata.csv"
        if not metadata.is_file():
            raise CorpusError(f"{dataset} has no metadata.csv; pass the metadata file itself "
                              "if it has another name")
    elif dataset.is_file():
        metadata = dataset
    else:
        raise CorpusError(f"dataset {dataset} does not exist")
    wavs = metadata.parent / "wavs"
    if not wavs.is_dir():
        raise CorpusError(f"no wavs/ folder next to {metadata}")
    return metadata, wavs


def parse_metadata(metadata: Path) -> list[tuple[int, str, str]]:
    """(line number, id field, text) per non-blank line; text is the normalized field, or the raw
    one when the normalized field is empty or absent."""
    try:
        lines = metadata.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        line = metadata.read_bytes()[: e.start].count(b"\n") + 1
        raise CorpusError(f"{metadata}:{line}: not valid UTF-8 (byte {e.start}); "
                          "re-encode the file as UTF-8") from e
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0].strip():
            raise CorpusError(f"{metadata}:{number}: expected 'id|text[|normalized text]', "
                              f"got {line[:80]!r}")
        normalized = fields[2].strip() if len(fields) > 2 else ""
        rows.append((number, fields[0].strip(), normalized or fields[1].strip()))
    if not rows:
        raise CorpusError(f"{metadata} lists no utterances")
    return rows


def resolve_audio(wavs: Path, id_field: str) -> tuple[str, Path]:
    """(utterance id, audio path) for an id field; refuses anything outside `wavs`."""
    if id_field.lower().endswith(AUDIO_SUFFIXES):
        utt_id, name = id_field.rsplit(".", 1)[0], id_field
    else:
        utt_id, name = id_field, id_field + ".wav"
    path = (wavs / name).resolve()
    if not path.is_relative_to(wavs.resolve()):
        raise CorpusError(f"id {id_field!r} points outside {wavs}")
    return utt_id, path


def load_corpus(dataset: str | Path, limit: int | None = None) -> Corpus:
    """Read the metadata and every WAV header; raise `CorpusError` listing every problem."""
    metadata, wavs = find_metadata(dataset)
    rows = parse_metadata(metadata)[:limit]
    utterances, problems, seen = [], [], {}
    for number, id_field, text in rows:
        try:
            utt_id, path = resolve_audio(wavs, id_field)
            if utt_id in seen:
                raise CorpusError(f"duplicate id {utt_id!r} (first on line {seen[utt_id]})")
            seen[utt_id] = number
            info = read_wav_info(path)
        except (CorpusError, WavError) as e:
            problems.append(f"{metadata.name}:{number}: {e}")
            continue
        utterances.append(Utterance(len(utterances), utt_id, text, path, number, info))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CorpusError(f"{len(problems)} problem(s) in {metadata}:\n  {shown}{more}")
    return Corpus(metadata.parent.resolve(), metadata, utterances)
