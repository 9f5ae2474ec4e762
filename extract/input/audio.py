"""Audio headers (WAV and FLAC), read without decoding: rate, length, channels, sample format.

Reading headers first gives every utterance's frame count before extraction, and catches files
the decoder would fail on or misread (its errors do not name the file). WAV means RIFF or RF64,
with chunks of any size before the samples; FLAC may follow one ID3 tag, as the decoder allows.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

PCM, ADPCM, IEEE_FLOAT, A_LAW, MU_LAW = 0x0001, 0x0002, 0x0003, 0x0006, 0x0007
IMA_ADPCM, EXTENSIBLE = 0x0011, 0xFFFE
# (format tag, bits) -> AudioInfo.format; 8-bit PCM is unsigned, as WAV defines it
SUPPORTED = {(PCM, 8): "pcm8", (PCM, 16): "pcm16", (PCM, 24): "pcm24", (PCM, 32): "pcm32",
             (IEEE_FLOAT, 32): "float32", (IEEE_FLOAT, 64): "float64", (MU_LAW, 8): "mulaw8",
             (A_LAW, 8): "alaw8"}
FORMAT_NAMES = {PCM: "PCM", ADPCM: "MS ADPCM", IEEE_FLOAT: "float", A_LAW: "A-law",
                MU_LAW: "mu-law", IMA_ADPCM: "IMA ADPCM"}
FLAC_BITS = (8, 16, 24)            # FLAC sample widths the decoder takes
FLAC_HEADER_BYTES = 8 + 34         # "fLaC", the STREAMINFO block header and its body
# data chunk size that streaming writers leave (ffmpeg to a pipe: kkroening/ffmpeg-python#118)
UNKNOWN_SIZE = 0xFFFFFFFF
MAX_SAMPLE_RATE = 768_000          # the highest in use; above it, a header is taken as corrupt
MAX_FMT_BYTES = 64                 # of a fmt chunk (16, 18 or 40 bytes in practice)
FINITE_CHECK_SAMPLES = 1 << 20     # float data is checked for NaN/Inf in blocks this long
# what a path that is not a regular file is (opening a named pipe would wait for a writer)
SPECIAL_FILES = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                 (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                 (stat.S_ISBLK, "a block device"))


class AudioError(ValueError):
    """The file is not audio this job can decode."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    num_samples: int      # per channel
    channels: int
    format: str           # e.g. "pcm16", "float32", "mulaw8", "flac24"
    file_size: int
    data_offset: int      # byte offset of the samples (WAV; 0 for FLAC)


def read_audio_info(path: Path) -> AudioInfo:
    """Parse the header of the WAV or FLAC file `path` (told apart by its first bytes, not its
    name); raise `AudioError` saying what is wrong."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in SPECIAL_FILES if test(mode)), "a special file")
            raise AudioError(f"{path}: {kind}, not an audio file")
        with open(path, "rb") as f:
            file_size = f.seek(0, 2)
            f.seek(0)
            start = f.read(FLAC_HEADER_BYTES)
            if start[:3] == b"ID3":
                start = _after_id3_tag(path, f, start)
            if start[:4] == b"fLaC":
                return _read_flac(path, start, file_size)
            if len(start) < 12 or start[:4] not in (b"RIFF", b"RF64") or start[8:12] != b"WAVE":
                raise AudioError(f"{path}: neither a WAV (RIFF or RF64) nor a FLAC file")
            return _read_wav(path, f, file_size)
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found") from None
    except OSError as e:
        raise AudioError(f"{path}: cannot read ({e.strerror})") from None


def _after_id3_tag(path: Path, f: BinaryIO, start: bytes) -> bytes:
    """The first bytes after an ID3v2 tag, which some taggers put before FLAC data (the decoder
    skips it, as libsndfile does); raise `AudioError` where the decoder would misread the file."""
    remove = "; remove the tag (e.g. ffmpeg -i IN -map_metadata -1 OUT)"
    if len(start) < 10:
        return b""                      # too short for a tag: neither WAV nor FLAC
    if start[5] & 0x10:
        raise AudioError(f"{path}: starts with an ID3 tag that has a footer, which the decoder "
                         "cannot skip" + remove)
    size = 0
    for byte in start[6:10]:            # "syncsafe": 7 bits a byte
        size = size << 7 | byte & 0x7F
    f.seek(10 + size)
    after = f.read(FLAC_HEADER_BYTES)
    if after[:4] in (b"RIFF", b"RF64"):
        raise AudioError(f"{path}: a WAV after an ID3 tag, which the decoder misreads" + remove)
    if after[:3] == b"ID3":
        raise AudioError(f"{path}: starts with two ID3 tags, which the decoder cannot skip"
                         + remove.replace("the tag", "them"))
    return after


def _read_wav(path: Path, f: BinaryIO, file_size: int) -> AudioInfo:
    """Walk the RIFF chunks from the file (seeking past each body, however large: metadata
    chunks before `data` can hold megabytes) to fmt and data. A data size of UNKNOWN_SIZE is
    the 64-bit one of an RF64 file's ds64 chunk, else the rest of the file, as libsndfile (and
    so the decoder) reads it."""
    fmt, pos, ds64_data_size = None, 12, None
    while pos + 8 <= file_size:
        f.seek(pos)
        chunk_id, size = struct.unpack("<4sI", f.read(8))
        body = pos + 8
        if chunk_id == b"ds64" and size >= 16:
            sizes = f.read(16)                    # RIFF size, data size
            ds64_data_size = struct.unpack("<8xQ", sizes)[0] if len(sizes) == 16 else None
        elif chunk_id == b"fmt ":
            fmt = _parse_fmt(path, f.read(min(size, MAX_FMT_BYTES)))
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"{path}: data chunk before fmt chunk")
            tag, channels, rate, bits = fmt
            available = file_size - body
            if size == UNKNOWN_SIZE:
                size = available if ds64_data_size is None else ds64_data_size
            if size > available:
                raise AudioError(f"{path}: truncated, header promises {size} data bytes "
                                 f"but the file holds {available}")
            frame_bytes = channels * bits // 8
            return AudioInfo(rate, size // frame_bytes, channels, SUPPORTED[tag, bits],
                             file_size, body)
        pos = body + size + (size & 1)
    raise AudioError(f"{path}: no {'data' if fmt else 'fmt'} chunk")


def _read_flac(path: Path, data: bytes, file_size: int) -> AudioInfo:
    """The STREAMINFO block, which FLAC requires first: rate, channels, bits, total samples."""
    if len(data) < FLAC_HEADER_BYTES or data[4] & 0x7F != 0:
        raise AudioError(f"{path}: FLAC file without a STREAMINFO block")
    fields = int.from_bytes(data[8 + 10: 8 + 18], "big")
    rate, total = fields >> 44, fields & ((1 << 36) - 1)
    channels, bits = ((fields >> 41) & 0x7) + 1, ((fields >> 36) & 0x1F) + 1
    if not 1 <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: invalid FLAC header (sample rate {rate} Hz)")
    if bits not in FLAC_BITS:
        raise AudioError(f"{path}: unsupported FLAC sample width {bits} bits; re-encode it as "
                         "24-bit (e.g. sox IN.flac -b 24 OUT.flac)")
    if total == 0:
        raise AudioError(f"{path}: the FLAC header does not give the number of samples (a "
                         "streamed encode); re-encode the file (e.g. flac -d then flac)")
    return AudioInfo(rate, total, channels, f"flac{bits}", file_size, 0)


def _parse_fmt(path: Path, body: bytes) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise AudioError(f"{path}: fmt chunk too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack_from("<H", body, 24)[0]
    if channels < 1 or not 1 <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: invalid header ({channels} channels, {rate} Hz)")
    if (tag, bits) not in SUPPORTED:
        name = f"{FORMAT_NAMES[tag]} {bits}-bit" if tag in FORMAT_NAMES else f"tag {tag:#x}"
        raise AudioError(f"{path}: unsupported sample format ({name}); convert it to 16-bit "
                         "PCM (e.g. sox IN.wav -b 16 -e signed-integer OUT.wav)")
    return tag, channels, rate, bits


def check_finite(path: Path, info: AudioInfo) -> None:
    """Raise `AudioError` if float samples hold NaN or Inf (integer PCM cannot)."""
    if not info.format.startswith("float"):
        return
    dtype = np.dtype("<f4" if info.format == "float32" else "<f8")
    count = info.num_samples * info.channels
    if count == 0:
        return
    samples = np.memmap(path, dtype=dtype, mode="r", offset=info.data_offset, shape=(count,))
    for start in range(0, count, FINITE_CHECK_SAMPLES):
        block = samples[start:start + FINITE_CHECK_SAMPLES]
        if not np.isfinite(block).all():
            bad = start + int(np.argmin(np.isfinite(block)))
            raise AudioError(f"{path}: sample {bad // info.channels} is NaN or infinite")


def write_wav(path: Path, samples: np.ndarray, sample_rate: int, fmt: str = "pcm16") -> None:
    """Write float samples in [-1, 1] ([n] or [n, channels]) as a WAV of format `fmt`:
    pcm16, pcm24, pcm32 or float32 (for demo data and tests)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    bits = int(fmt[-2:])
    if fmt == "float32":
        tag, payload = IEEE_FLOAT, x.astype("<f4").tobytes()
    elif fmt in ("pcm16", "pcm24", "pcm32"):
        scale = 2 ** (bits - 1)
        ints = np.clip(np.round(x * scale), -scale, scale - 1).astype("<i4")
        payload = ints.view(np.uint8).reshape(-1, 4)[:, : bits // 8].tobytes()
        tag = PCM
    else:
        raise ValueError(f"unsupported WAV format {fmt!r}")
    channels, block = x.shape[1], x.shape[1] * bits // 8
    header = b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE" + b"fmt " + \
        struct.pack("<IHHIIHH", 16, tag, channels, sample_rate, sample_rate * block, block,
                    bits) + b"data" + struct.pack("<I", len(payload))
    Path(path).write_bytes(header + payload)
