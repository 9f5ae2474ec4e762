"""Bad inputs: each is skipped with a reason naming the line and file, the job exits 3 (0 with
--allow-skipped), and every other utterance comes out exactly as if the bad ones were absent."""

import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import zarr

from extract.demo import synth_utterance
from extract.input.audio import AudioError, check_finite, read_audio_info, write_wav
from extract.loader import FeatureStore
from extract.store.layout import FRAME_ARRAYS, OFFSETS, SPANS

from conftest import id3_tag, raw_wav

GOOD = [  # id, seconds, rate, channels, format
    ("g_pcm16", 1.2, 22050, 1, "pcm16"),
    ("g_pcm24_stereo", 0.9, 44100, 2, "pcm24"),
    ("g_float32", 1.0, 48000, 1, "float32"),
    ("g_pcm32", 0.8, 16000, 1, "pcm32"),
    ("g_silent", 0.6, 22050, 1, "pcm16"),
]


def write_good(wavs, utt_id, seconds, rate, channels, fmt, seed):
    y = np.zeros(int(seconds * rate)) if utt_id == "g_silent" else \
        synth_utterance(seconds, rate, np.random.default_rng(seed))
    write_wav(wavs / f"{utt_id}.wav", np.stack([y, 0.5 * y], 1) if channels == 2 else y, rate, fmt)


def write_bad(wavs):
    """id -> expected words of the reason, for each bad audio file."""
    (wavs / "b_zero_bytes.wav").write_bytes(b"")
    (wavs / "b_text.wav").write_text("this is not audio\n")
    write_wav(wavs / "b_truncated.wav", np.zeros(20000), 22050)
    data = (wavs / "b_truncated.wav").read_bytes()
    (wavs / "b_truncated.wav").write_bytes(data[: len(data) // 2])
    for name, value in (("b_nan", np.nan), ("b_inf", np.inf)):
        y = np.full(8000, 0.1, dtype=np.float32)
        y[4321] = value
        (wavs / f"{name}.wav").write_bytes(raw_wav(3, 1, 22050, 32, y.tobytes()))
    write_wav(wavs / "b_empty.wav", np.zeros(0), 22050)
    write_wav(wavs / "b_one_sample.wav", np.zeros(1), 22050)
    (wavs / "b_adpcm.wav").write_bytes(raw_wav(2, 1, 8000, 4, bytes(4000)))
    (wavs / "b_ima_adpcm.wav").write_bytes(raw_wav(0x11, 1, 8000, 4, bytes(4000)))
    (wavs / "b_float16.wav").write_bytes(raw_wav(3, 1, 22050, 16, bytes(16000)))
    (wavs / "b_rate.wav").write_bytes(raw_wav(1, 1, 1_581_011_820, 16, bytes(16000)))
    # a valid header the decoder rejects (2000 channels): found at decode time, not before
    (wavs / "b_decoder.wav").write_bytes(raw_wav(1, 2000, 22050, 16, bytes(2000 * 2 * 700)))
    write_wav(wavs / "b_long.wav", np.zeros(3 * 8000), 8000)
    y = synth_utterance(1.0, 22050, np.random.default_rng(5))
    for name, subtype in (("b_flac_truncated", "PCM_16"), ("b_flac_20bit", "PCM_24"),
                          ("b_flac_no_length", "PCM_16")):
        soundfile.write(wavs / f"{name}.flac", y, 22050, subtype=subtype)
    data = (wavs / "b_flac_truncated.flac").read_bytes()
    (wavs / "b_flac_truncated.flac").write_bytes(data[: len(data) // 2])
    (wavs / "b_id3_footer.flac").write_bytes(id3_tag(100, footer=True) + data)
    (wavs / "b_id3_wav.wav").write_bytes(id3_tag(100) + (wavs / "b_long.wav").read_bytes())
    (wavs / "b_id3_twice.flac").write_bytes(id3_tag(100) + id3_tag(50) + data)
    (wavs / "b_mp3.wav").write_bytes(id3_tag(100) + b"\xff\xfb\x90\x00" + bytes(400))
    data = bytearray((wavs / "b_flac_no_length.flac").read_bytes())
    data[21] &= 0xF0                  # STREAMINFO's 36-bit total sample count set to 0
    data[22:26] = bytes(4)
    (wavs / "b_flac_no_length.flac").write_bytes(bytes(data))
    data = bytearray((wavs / "b_flac_20bit.flac").read_bytes())
    fields = int.from_bytes(data[18:26], "big") & ~(0x1F << 36)   # STREAMINFO bits - 1
    data[18:26] = (fields | 19 << 36).to_bytes(8, "big")
    (wavs / "b_flac_20bit.flac").write_bytes(bytes(data))
    fields = fields & ((1 << 44) - 1) | 23 << 36 | 900_000 << 44   # 24-bit at 900 kHz
    data[18:26] = fields.to_bytes(8, "big")
    (wavs / "b_flac_rate.flac").write_bytes(bytes(data))
    # the decoder's own words (libsndfile's, through DALI)
    return {"b_decoder": "audio decoder failed on this file (Failed to open encoded data: Too "
                         "many channels", "b_missing": "file not found",
            "b_flac_truncated": "audio decoder failed on this file (it decoded ",
            "b_flac_20bit": "unsupported FLAC sample width 20 bits",
            "b_flac_no_length": "does not give the number of samples",
            "b_zero_bytes": "neither a WAV (RIFF or RF64) nor a FLAC",
            "b_text": "neither a WAV (RIFF or RF64) nor a FLAC", "b_truncated": "truncated",
            "b_nan": "sample 4321 is NaN or infinite", "b_inf": "sample 4321 is NaN",
            "b_empty": "too short", "b_one_sample": "too short",
            "b_adpcm": "sample format (MS ADPCM 4-bit)",
            "b_ima_adpcm": "sample format (IMA ADPCM 4-bit)",
            "b_float16": "sample format (float 16-bit)",
            "b_rate": "invalid header (1 channels, 1581011820 Hz)",
            "b_flac_rate": "invalid FLAC header (sample rate 900000 Hz)",
            "b_long": "longer than --max-duration",
            "b_id3_footer": "ID3 tag that has a footer",
            "b_id3_wav": "a WAV after an ID3 tag, which the decoder misreads",
            "b_id3_twice": "starts with two ID3 tags", "b_mp3": "neither a WAV"}


BAD_LINES = [  # metadata lines that are wrong themselves
    (b"no separator at all", "expected 'id|text"),
    (b"caf\xe9|not utf-8|", "not valid UTF-8"),
    (b"g_pcm16.wav|a duplicate|", "duplicate id 'g_pcm16'"),
    (b"../../outside|escapes|", "outside"),
    (b"/etc/passwd|absolute|", "outside"),
]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "extract", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """(messy corpus, clean corpus with only the good files, {line: expected reason})."""
    root = tmp_path_factory.mktemp("bad")
    messy, clean = root / "messy", root / "clean"
    for folder in (messy, clean):
        (folder / "wavs").mkdir(parents=True)
    for k, spec in enumerate(GOOD):
        write_good(messy / "wavs", *spec, seed=k)
        shutil.copy(messy / "wavs" / f"{spec[0]}.wav", clean / "wavs")
    bad = write_bad(messy / "wavs")
    lines, expected = [], {}
    good_lines = [f"{g[0]}|Text of {g[0]}.|".encode() for g in GOOD]
    for k, (utt_id, reason) in enumerate(bad.items()):
        lines.append(good_lines[k] if k < len(good_lines) else None)
        lines.append(f"{utt_id}|Text of {utt_id}.|".encode())
        expected[len([x for x in lines if x is not None])] = reason
    lines = [x for x in lines if x is not None]
    for line, reason in BAD_LINES:
        lines.append(line)
        expected[len(lines)] = reason
    (messy / "metadata.csv").write_bytes(b"\r\n".join(lines) + b"\r\n")
    (clean / "metadata.csv").write_bytes(b"\xef\xbb\xbf" + b"\n\n".join(good_lines) + b"\n")
    return messy, clean, expected


ARGS = ["--device", "cpu", "--batch-size", "3", "--shard-frames", "64", "--max-duration", "2.5",
        "--quiet"]


@pytest.fixture(scope="module")
def clean_store(corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "clean.zarr"
    assert cli("run", corpora[1], out, *ARGS).returncode == 0
    return out


def assert_same_as_clean(out, clean_store):
    store, reference = FeatureStore(out), FeatureStore(clean_store)
    assert store.ids == reference.ids == tuple(g[0] for g in GOOD)
    group = zarr.open_group(str(out), mode="r")
    clean_group = zarr.open_group(str(clean_store), mode="r")
    for name in (*FRAME_ARRAYS, OFFSETS, SPANS):
        np.testing.assert_array_equal(group[name][:], clean_group[name][:], err_msg=name)
    assert store.stats == reference.stats
    assert store.attrs["manifest_sha256"] == reference.attrs["manifest_sha256"]


def test_every_bad_item_is_named_and_the_rest_is_exactly_a_clean_run(corpora, clean_store,
                                                                    tmp_path):
    messy, _, expected = corpora
    result = cli("run", messy, tmp_path / "messy.zarr", *ARGS)
    assert result.returncode == 3, result.stderr
    assert f"skipped: {len(expected)} item(s)" in result.stdout
    store = FeatureStore(tmp_path / "messy.zarr")
    assert f"done: {len(store)} utterances ({len(store)} extracted by this run)" in result.stdout
    reasons = {r["line"]: r["reason"] for r in store.attrs["rejected"]}
    assert set(reasons) == set(expected)
    listed = cli("inspect", tmp_path / "messy.zarr").stdout
    for k, (line, words) in enumerate(sorted(expected.items())):
        assert words in reasons[line], (line, reasons[line])
        assert f"line {line} " in listed
        assert (f"line {line} " in result.stdout) == (k < 20)     # the summary shows 20
    assert f"... and {len(expected) - 20} more" in result.stdout
    assert "b_decoder.wav" in reasons[[k for k, v in expected.items() if "decoder" in v][0]]
    assert any(re.search(r"b_flac_truncated.flac: .* \(it decoded \d+ of the 22050 samples its "
                         r"header gives: the file is cut short or corrupt\)$", r)
               for r in reasons.values())
    assert_same_as_clean(tmp_path / "messy.zarr", clean_store)
    silent = store["g_silent"]
    assert not silent["voiced"].any() and not silent["f0"].any()

    again = cli("run", messy, tmp_path / "again.zarr", *ARGS, "--allow-skipped")
    assert again.returncode == 0, again.stderr


def test_check_lists_what_a_run_would_skip_and_extract(corpora, clean_store):
    """`check` reads headers only: it names every bad item but those the decoder finds, and
    counts the utterances and frames the run then writes."""
    messy, clean, expected = corpora
    result = cli("check", messy, "--max-duration", "2.5")
    assert result.returncode == 3, result.stderr
    at_decode = {line for line, words in expected.items() if "decoder failed" in words}
    assert at_decode and f"{len(expected) - len(at_decode)} to skip" in result.stdout
    listed = {int(m[1]): m[2] for m in re.finditer(r"line (\d+) \([^)]*\): (.*)", result.stdout)}
    assert set(listed) == set(expected) - at_decode
    assert all(expected[line] in reason for line, reason in listed.items())
    assert cli("check", messy, "--max-duration", "2.5", "--allow-skipped").returncode == 0
    result = cli("check", clean, "--max-duration", "2.5")
    store = FeatureStore(clean_store)
    assert result.returncode == 0, result.stderr
    assert f"{len(store)} to extract, 0 to skip" in result.stdout
    assert f"; {store.lengths.sum()} frames at preset hifigan" in result.stdout


CRASH_IN_COMPACTION = """
import os, sys
import zarr
from extract.cli import main
from extract.store.writer import StoreWriter

point, after = sys.argv[1], int(sys.argv[2])
flushes = []
flush, remove = StoreWriter._flush, StoreWriter.remove_utterances

def remove_then_crash(self, *args):
    self.compacting_now = True
    (self.path / "progress" / "notes.json").write_text("{}")   # not a marker: ignored
    return remove(self, *args)

def flush_then_crash(self, shard, buffer):
    if point in ("shard", "mid-shard") and getattr(self, "compacting_now", False):
        if len(flushes) == after:
            if point == "mid-shard":     # one array of the shard written, not the others
                lo, hi = self._shard_range(shard)
                self.arrays["mel"][lo:hi] = buffer["mel"]
            os._exit(9)
        flushes.append(shard)
    return flush(self, shard, buffer)

StoreWriter._flush, StoreWriter.remove_utterances = flush_then_crash, remove_then_crash
if point == "end":
    zarr.Array.resize = lambda *args: os._exit(9)
if point == "finish":
    StoreWriter.finish = lambda *args: os._exit(9)
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("point,after", [("shard", 0), ("shard", 2), ("mid-shard", 1),
                                         ("end", 0), ("finish", 0)])
def test_a_crash_while_removing_decoder_failures_resumes(corpora, clean_store, tmp_path,
                                                         point, after):
    """A file that only fails in the decoder is removed after its frames were laid out, by
    shifting every later frame left in place; a SIGKILL-like exit at any point of that
    (before any shard, between shards, halfway through a shard, before the arrays shrink,
    before the store is finished) leaves a store that --resume completes into the clean one."""
    out = tmp_path / "messy.zarr"
    crashed = subprocess.run([sys.executable, "-c", CRASH_IN_COMPACTION, point, str(after),
                              "run", corpora[0], out, *ARGS], capture_output=True, text=True)
    assert crashed.returncode == 9, crashed.stderr
    assert zarr.open_group(str(out), mode="r").attrs["tts_extract"]["compacting"]
    resumed = cli("run", corpora[0], out, *ARGS, "--resume")
    assert resumed.returncode == 3, resumed.stderr
    assert "b_decoder.wav" in resumed.stdout
    assert_same_as_clean(out, clean_store)
    assert len(FeatureStore(out).attrs["rejected"]) == len(corpora[2])


def test_a_trimming_preset_finds_decoder_failures_before_laying_out_the_store(corpora,
                                                                             tmp_path):
    """Under a silence-trimming preset every file is decoded before the store is laid out, so
    the decoder failure is rejected then; the rest is still exactly a clean run's."""
    messy, clean, expected = corpora
    trimming = [*ARGS, "--preset", "coqui-fastpitch"]
    assert cli("run", clean, tmp_path / "clean.zarr", *trimming).returncode == 0
    result = cli("run", messy, tmp_path / "messy.zarr", *trimming)
    assert result.returncode == 3, result.stderr
    reasons = {r["line"]: r["reason"] for r in FeatureStore(tmp_path / "messy.zarr")
               .attrs["rejected"]}
    assert set(reasons) == set(expected)
    for line, words in expected.items():
        assert words in reasons[line], (line, reasons[line])
    assert_same_as_clean(tmp_path / "messy.zarr", tmp_path / "clean.zarr")


def test_a_thirty_minute_file_is_rejected_by_the_default_max_duration(tmp_path):
    (tmp_path / "c" / "wavs").mkdir(parents=True)
    write_wav(tmp_path / "c" / "wavs" / "short.wav", np.zeros(8000), 8000)
    write_wav(tmp_path / "c" / "wavs" / "long.wav", np.zeros(30 * 60 * 8000), 8000)
    (tmp_path / "c" / "metadata.csv").write_text("short|s|\nlong|l|\n")
    result = cli("run", tmp_path / "c", tmp_path / "o.zarr", "--device", "cpu", "--quiet")
    assert result.returncode == 3
    assert "line 2 (long): " in result.stdout and "1800 s is longer than --max-duration (600 s)" \
        in result.stdout
    assert FeatureStore(tmp_path / "o.zarr").ids == ("short",)


def test_speaker_statistics_after_removing_a_decoder_failure(corpora, tmp_path):
    """Per-speaker statistics of the shards rewritten without a decoder failure follow the
    new utterance order."""
    messy = corpora[0]
    speakers = {"g_pcm16": "ann", "b_decoder": "bob", "g_pcm24_stereo": "bob",
                "g_float32": "ann", "g_pcm32": "bob", "g_silent": "ann"}
    for name, keep in (("with_failure", speakers), ("clean", {k: v for k, v in speakers.items()
                                                              if k != "b_decoder"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.csv").write_text(
            "".join(f"{k}|Text of {k}.||{v}\n" for k, v in keep.items()))
        shutil.copytree(messy / "wavs", tmp_path / name / "wavs")
    assert cli("run", tmp_path / "with_failure", tmp_path / "a.zarr", *ARGS).returncode == 3
    assert cli("run", tmp_path / "clean", tmp_path / "b.zarr", *ARGS).returncode == 0
    stats = FeatureStore(tmp_path / "a.zarr").stats
    assert set(stats["speakers"]) == {"ann", "bob"}
    assert stats == FeatureStore(tmp_path / "b.zarr").stats


def test_resume_refuses_a_compaction_that_no_longer_matches_the_plan(corpora, tmp_path):
    """Were the utterances an interrupted compaction was removing no longer at those places in
    the plan (the input changed under it), resume refuses rather than remove others."""
    from types import SimpleNamespace

    from extract.input.corpus import load_corpus
    from extract.job import _finish_compaction
    from extract.store.output import StoreError

    utts = load_corpus(corpora[1]).utterances
    writer = SimpleNamespace(path=tmp_path, compacting={
        "removed": [1], "rejected": [{"line": 9, "entry": "b_decoder", "reason": "failed"}]})
    with pytest.raises(StoreError, match="input change"):
        _finish_compaction(writer, utts, np.ones(len(utts), dtype=np.int64), [])


def damaged(data: bytes, rng: random.Random) -> bytes:
    """`data` with random damage: bytes of its header changed, the file cut short, or bytes
    anywhere changed."""
    data, kind = bytearray(data), rng.random()
    if kind < 0.5:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(min(len(data), 96))] = rng.randrange(256)
    elif kind < 0.7:
        data = data[:rng.randrange(len(data))]
    else:
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


@pytest.fixture(scope="module")
def sound_files(corpora, tmp_path_factory):
    """The clean corpus's WAVs and a 16-bit and a 24-bit FLAC, as {name: bytes}."""
    files = {p.name: p.read_bytes() for p in sorted((corpora[1] / "wavs").iterdir())}
    y = synth_utterance(0.7, 22050, np.random.default_rng(9))
    for subtype in ("PCM_16", "PCM_24"):
        path = tmp_path_factory.mktemp("flac") / f"f_{subtype}.flac"
        soundfile.write(path, y, 22050, subtype=subtype)
        files[path.name] = path.read_bytes()
    return files


def test_a_damaged_header_is_read_or_rejected_with_a_reason(sound_files, tmp_path):
    """Whatever is damaged, reading a header (and checking float samples) either succeeds or
    raises AudioError naming the file: never another exception."""
    rng, path, accepted = random.Random(0), tmp_path / "x.wav", 0
    for _ in range(5000):
        path.write_bytes(damaged(rng.choice(list(sound_files.values())), rng))
        try:
            check_finite(path, read_audio_info(path))
            accepted += 1
        except AudioError as e:
            assert str(e).startswith(f"{path}: "), e
    assert 500 < accepted < 4500        # both outcomes were exercised


def test_damaged_files_are_each_stored_or_named_and_the_others_untouched(corpora, clean_store,
                                                                        sound_files, tmp_path):
    """A corpus of randomly damaged files among the good ones: the job finishes, every line is
    either stored or skipped with a reason naming its file, and the good files' features are
    exactly those of the clean run."""
    rng, messy = random.Random(1), tmp_path / "damaged"
    (messy / "wavs").mkdir(parents=True)
    lines = [f"{g[0]}|Text of {g[0]}.|" for g in GOOD]
    for g in GOOD:
        (messy / "wavs" / f"{g[0]}.wav").write_bytes(sound_files[f"{g[0]}.wav"])
    for k in range(40):
        name = rng.choice(list(sound_files))
        file_name = f"d{k}{Path(name).suffix}"
        (messy / "wavs" / file_name).write_bytes(damaged(sound_files[name], rng))
        lines.append(f"{file_name}|Damaged {k}.|")
    (messy / "metadata.csv").write_text("\n".join(lines) + "\n")
    result = cli("run", messy, tmp_path / "out.zarr", *ARGS)
    store = FeatureStore(tmp_path / "out.zarr")
    rejected = {r["line"]: r["reason"] for r in store.attrs["rejected"]}
    assert result.returncode == (3 if rejected else 0), result.stderr
    assert 5 < len(rejected) < 35                       # both outcomes were exercised
    stored = set(store.ids)
    for number, line in enumerate(lines, 1):
        utt_id = Path(line.split("|")[0]).stem
        assert (utt_id in stored) != (number in rejected), line
        if number in rejected:
            assert f"/{line.split('|')[0]}: " in rejected[number], rejected[number]
    reference = FeatureStore(clean_store)
    for utt_id in reference.ids:
        ours, theirs = store[utt_id], reference[utt_id]
        for name in FRAME_ARRAYS:
            assert torch.equal(ours[name], theirs[name]), (utt_id, name)
