"""Shared fixtures: small synthetic corpora written as real WAV files, and two recorded
utterances (tests/data/recorded)."""

from __future__ import annotations

import functools
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import torch

if not torch.cuda.is_available():   # Triton kernels run on the CPU in its interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
import soundfile
import zarr

from extract.demo import synth_utterance
from extract.input.audio import write_wav
from extract.store.layout import ATTRS_KEY, FRAME_ARRAYS, OFFSETS, PROGRESS, SPANS


def raw_wav(tag: int, channels: int, rate: int, bits: int, payload: bytes) -> bytes:
    """A WAV file's bytes: any format tag and sample width, `payload` as the data chunk."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, tag, channels, rate, rate * block, block, bits) +
            b"data" + struct.pack("<I", len(payload)) + payload)


def id3_tag(body_bytes: int, footer: bool = False) -> bytes:
    """An ID3v2.4 tag of `body_bytes` zero bytes (its size "syncsafe": 7 bits a byte), with the
    footer that the header's flag announces, if asked."""
    size = bytes((body_bytes >> shift) & 0x7F for shift in (21, 14, 7, 0))
    flags = bytes([0x10 if footer else 0])
    return (b"ID3\x04\x00" + flags + size + bytes(body_bytes) +
            (b"3DI\x04\x00" + flags + size if footer else b""))


def write_corpus(folder: Path, specs: list[tuple[str, float, int, int, str]],
                 lj_style: bool = True) -> Path:
    """specs: (id, seconds, rate, channels, format) -> folder with metadata.csv and wavs/."""
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (utt_id, seconds, rate, channels, fmt) in enumerate(specs):
        y = synth_utterance(seconds, rate, np.random.default_rng(k + 100))
        if channels == 2:
            y = np.stack([y, -0.5 * y], axis=1)
        write_wav(folder / "wavs" / f"{utt_id}.wav", y, rate, fmt)
        lines.append(f"{utt_id}|Text of {utt_id}.|Normalized {utt_id}." if lj_style
                     else f"{utt_id}.wav|Raw text {k}|")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


RECORDED = Path(__file__).resolve().parent / "data" / "recorded"


@functools.lru_cache(maxsize=None)
def recorded_speech(rate: int) -> dict[str, np.ndarray]:
    """The recorded utterances (16 kHz WAVs) as float32 at `rate`, resampled by librosa (soxr),
    not by our resampler: {name: audio}."""
    import librosa

    clips = {}
    for path in sorted(RECORDED.glob("*.wav")):
        y, sr = soundfile.read(path, dtype="float32")
        clips[path.stem] = librosa.resample(y, orig_sr=sr, target_sr=rate).astype(np.float32)
    assert len(clips) == 2, f"tests/data/recorded holds {sorted(clips)}"
    return clips


MIXED_SPECS = [
    ("a", 2.0, 22050, 1, "pcm16"),
    ("b", 1.3, 44100, 2, "pcm24"),
    ("c", 3.1, 48000, 1, "float32"),
    ("d", 0.7, 16000, 1, "pcm32"),
    ("e", 2.6, 22050, 2, "pcm16"),
    ("f", 1.0, 22050, 1, "float32"),
    ("g", 1.2, 22254, 1, "pcm16"),      # the rate of early Macs: few common factors with 22050
]


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("mixed"), MIXED_SPECS)


@pytest.fixture(scope="session")
def mixed_store(mixed_corpus, tmp_path_factory) -> Path:
    from extract.job import run_job

    out = tmp_path_factory.mktemp("stores") / "mixed.zarr"
    run_job(mixed_corpus, out, device="cpu", batch_size=4, show_progress=False)
    return out


ROOT = Path(__file__).resolve().parents[1]
COPIED = ("pyproject.toml", "README.md", "extract", "kernels", "configs")   # as Dockerfile.cuda


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from what Dockerfile.cuda copies (a copy: no build/ or egg-info
    left by a local install), without dependencies."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    source.mkdir()
    for name in COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(folder), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    (built,) = folder.glob("tts_extract-*.whl")
    return built


# The features' reference tests run on each device here: CUDA's too where a GPU is present.
DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(scope="session", params=DEVICES)
def mixed_store_on_each_device(request, mixed_corpus, mixed_store, tmp_path_factory) -> Path:
    """mixed_store, and the same corpus extracted with --device cuda where CUDA is present."""
    if request.param == "cpu":
        return mixed_store
    from extract.job import run_job

    out = tmp_path_factory.mktemp("stores") / f"mixed-{request.param}.zarr"
    run_job(mixed_corpus, out, device=request.param, batch_size=4, show_progress=False)
    return out


SHARD = 512
ARGS = ["--device", "cpu", "--batch-size", "2", "--shard-frames", str(SHARD)]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """36 utterances of 0.8-2.2 s at three rates, mono and stereo, over about 9 shards, of 4
    speakers in turn (so that each shard's per-speaker statistics count)."""
    specs = [(f"u{k:02d}", 0.8 + 0.35 * (k % 5), (22050, 44100, 16000)[k % 3], 1 + k % 2,
              "pcm16") for k in range(36)]
    folder = write_corpus(tmp_path_factory.mktemp("resume"), specs)
    metadata = folder / "metadata.csv"
    lines = metadata.read_text().splitlines()
    metadata.write_text("".join(f"{line}|spk{k % 4}\n" for k, line in enumerate(lines)))
    return folder


@pytest.fixture(scope="session")
def reference(corpus, tmp_path_factory):
    """The corpus extracted by one uninterrupted process."""
    from extract.job import run_job

    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    run_job(corpus, out, device="cpu", batch_size=2, shard_frames=SHARD, show_progress=False)
    return out


@pytest.fixture(scope="session")
def trimmed_reference(corpus, tmp_path_factory):
    """The corpus extracted by one uninterrupted process under a silence-trimming preset."""
    from extract.job import run_job

    out = tmp_path_factory.mktemp("ref") / "trimmed.zarr"
    run_job(corpus, out, preset="coqui-fastpitch", device="cpu", batch_size=2,
            shard_frames=SHARD, show_progress=False)
    return out


def assert_same_store(out, reference) -> None:
    a = zarr.open_group(str(out), mode="r")
    b = zarr.open_group(str(reference), mode="r")
    for name in (*FRAME_ARRAYS, OFFSETS, SPANS, "utterances/id", "utterances/text",
                 "utterances/speaker"):
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    attrs_a, attrs_b = dict(a.attrs[ATTRS_KEY]), dict(b.attrs[ATTRS_KEY])
    attrs_a.pop("run"), attrs_b.pop("run")
    assert attrs_a == attrs_b
    assert not (out / PROGRESS).exists()


def start(corpus, out, *extra, launcher=()):
    """A real job in its own process (`launcher`: e.g. torchrun's arguments)."""
    command = [*launcher] if launcher else [sys.executable]
    return subprocess.Popen([*command, "-m", "extract", "run", str(corpus), str(out), *ARGS,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_shards(process, out, count: int, timeout: float = 120) -> None:
    """Until `count` shards are marked done (0: until the store exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = out / PROGRESS
        if progress.is_dir() and len(list(progress.glob("*.json"))) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"job ended before {count} shards: {process.stderr.read()}")
        time.sleep(0.005)
    raise AssertionError("timed out")


def kill_after_shards(corpus, out, count: int, *extra) -> None:
    """Start a job on `out`, SIGKILL it once `count` shards are marked done, and reap it."""
    job = start(corpus, out, *extra)
    wait_for_shards(job, out, count)
    job.kill()
    job.wait()
