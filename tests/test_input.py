import dataclasses
import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from extract.config import PresetError, load_preset, preset_from_dict
from extract.demo import synth_utterance
from extract.input.audio import AudioError, read_audio_info, write_wav
from extract.input.corpus import CorpusError, load_corpus, relative_names
from extract.job import run_job
from extract.loader import FeatureStore

from conftest import id3_tag, raw_wav, write_corpus


def test_ljspeech_and_seed_metadata_styles(tmp_path):
    lj = load_corpus(write_corpus(tmp_path / "lj", [("LJ001-0001", 0.5, 22050, 1, "pcm16")]))
    assert (lj.utterances[0].id, lj.utterances[0].text) == ("LJ001-0001", "Normalized LJ001-0001.")
    seed = load_corpus(write_corpus(tmp_path / "seed", [("x_0", 0.5, 22050, 1, "pcm16")],
                                    lj_style=False) / "metadata.csv")
    assert (seed.utterances[0].id, seed.utterances[0].text) == ("x_0", "Raw text 0")
    assert seed.utterances[0].path.name == "x_0.wav"


def test_flac_gives_the_features_of_the_same_samples_in_a_wav(tmp_path):
    """FLAC files, found for a bare id or named, 16- and 24-bit, stereo, resampled: the store
    equals the one made from WAVs that hold the same integer samples."""
    wav = write_corpus(tmp_path / "wav", [("a", 1.3, 44100, 2, "pcm16"),
                                          ("b", 0.9, 22050, 1, "pcm24")])
    flac = tmp_path / "flac"
    (flac / "wavs").mkdir(parents=True)
    for name, subtype, dtype in (("a", "PCM_16", "int16"), ("b", "PCM_24", "int32")):
        samples, rate = soundfile.read(wav / "wavs" / f"{name}.wav", dtype=dtype)
        soundfile.write(flac / "wavs" / f"{name}.flac", samples, rate, subtype=subtype)
        info, reference = (read_audio_info(folder / "wavs" / f"{name}.{ext}")
                           for folder, ext in ((flac, "flac"), (wav, "wav")))
        assert (info.format, info.num_samples, info.channels, info.sample_rate) == \
            (f"flac{subtype[-2:]}", reference.num_samples, reference.channels, rate)
    (flac / "metadata.csv").write_text("a|Text of a.|\nb.flac|Text of b.|\n")
    assert_same_stores(wav, flac, ["a", "b"])


def assert_same_stores(first, second, ids: list[str]) -> None:
    """Run the job on both corpus folders; the stores hold the same utterances and features."""
    stores = []
    for folder in (first, second):
        run_job(folder, folder / "out.zarr", device="cpu", show_progress=False)
        stores.append(FeatureStore(folder / "out.zarr"))
    assert stores[0].ids == stores[1].ids == tuple(ids)
    np.testing.assert_array_equal(stores[0].spans, stores[1].spans)
    for name in ids:
        for feature in ("mel", "f0", "voiced", "voiced_prob", "energy"):
            np.testing.assert_array_equal(stores[0][name][feature], stores[1][name][feature])


def g711_mu_law(code: int) -> int:
    """ITU-T G.711 mu-law to linear, 16-bit scale (ulaw2linear of Sun's reference g711.c)."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def g711_a_law(code: int) -> int:
    """ITU-T G.711 A-law to linear, 16-bit scale (alaw2linear of Sun's reference g711.c)."""
    a = code ^ 0x55
    t, segment = (a & 0x0F) << 4, (a & 0x70) >> 4
    t = t + 8 if segment == 0 else (t + 0x108) << max(segment - 1, 0)
    return t if a & 0x80 else -t


EIGHT_BIT = {  # format: (WAV format tag or None for FLAC, value of each code 0..255)
    "pcm8": (1, [(c - 128) / 128 for c in range(256)]),               # unsigned
    "mulaw8": (7, [g711_mu_law(c) / 32768 for c in range(256)]),
    "alaw8": (6, [g711_a_law(c) / 32768 for c in range(256)]),
    "flac8": (None, [(c - 256 if c > 127 else c) / 128 for c in range(256)]),   # signed
}


def test_8bit_formats_decode_to_the_values_their_standards_define(tmp_path):
    """Unsigned 8-bit PCM, G.711 mu-law and A-law WAVs and 8-bit FLAC, mono and stereo, at
    several rates (every code, then speech): the store equals the one made from float32 WAVs
    of the values the standards give each code (exact in float32)."""
    coded, reference = tmp_path / "coded", tmp_path / "float"
    for folder in (coded, reference):
        (folder / "wavs").mkdir(parents=True)
    for k, (fmt, rate, channels) in enumerate([("pcm8", 22050, 1), ("mulaw8", 8000, 2),
                                               ("alaw8", 16000, 1), ("flac8", 22050, 2)]):
        tag, values = EIGHT_BIT[fmt]
        table = np.array(values)
        y = synth_utterance(1.0, rate, np.random.default_rng(k))
        y = np.stack([y, -0.5 * y], 1) if channels == 2 else y[:, None]
        codes = np.concatenate([np.repeat(np.arange(256)[:, None], channels, 1),
                                np.abs(y[..., None] - table).argmin(-1)]).astype(np.uint8)
        name = f"{fmt}.{'flac' if tag is None else 'wav'}"
        if tag is None:
            soundfile.write(coded / "wavs" / name, table[codes], rate, subtype="PCM_S8")
        else:
            (coded / "wavs" / name).write_bytes(raw_wav(tag, channels, rate, 8, codes.tobytes()))
        write_wav(reference / "wavs" / f"{fmt}.wav", table[codes], rate, "float32")
        info = read_audio_info(coded / "wavs" / name)
        assert (info.format, info.num_samples, info.channels) == (fmt, len(codes), channels)
        for folder, file in ((coded, name), (reference, f"{fmt}.wav")):
            with open(folder / "metadata.csv", "a") as f:
                f.write(f"{file}|Text of {fmt}.|\n")
    assert_same_stores(coded, reference, list(EIGHT_BIT))


def test_a_dataset_without_metadata_csv_or_wavs_names_what_it_has(tmp_path):
    (tmp_path / "d" / "wav").mkdir(parents=True)
    for name in ("train.csv", "val.txt", "README.md"):
        (tmp_path / "d" / name).write_text("")
    with pytest.raises(CorpusError, match=r"has no metadata.csv; pass the metadata file itself "
                                          r"if it has another name \(here: train.csv, val.txt\)$"):
        load_corpus(tmp_path / "d")
    with pytest.raises(CorpusError, match=r"no wavs/ folder next to .*train.csv$"):
        load_corpus(tmp_path / "d" / "train.csv")         # wav/ holds no audio (yet)
    (tmp_path / "d" / "wav" / "a.WAV").write_bytes(b"")
    with pytest.raises(CorpusError, match=r"train.csv; wav/ holds audio: name it wavs, or link "
                                          r"it \(ln -s wav .*/d/wavs\)$"):
        load_corpus(tmp_path / "d" / "train.csv")
    (tmp_path / "d" / "wavs").symlink_to("/nowhere/wavs")
    with pytest.raises(CorpusError, match=r"d/wavs is a link to /nowhere/wavs, which does not "
                                          r"exist$"):
        load_corpus(tmp_path / "d" / "train.csv")


def test_the_audio_folder_given_as_the_dataset_names_the_folder_above(tmp_path):
    folder = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16")])
    with pytest.raises(CorpusError, match=r"c/wavs is an audio folder; pass the dataset folder "
                                          rf"above it, {re.escape(str(folder.resolve()))}, which "
                                          r"has metadata.csv$"):
        load_corpus(folder / "wavs")


LINES = "a|Café|café\nb|B|\n" * 40


@pytest.mark.parametrize("content,message", [
    (LINES.encode("utf-16"), r"is UTF-16 text; re-encode it as UTF-8 \(iconv -f UTF-16 -t UTF-8 "),
    (LINES.encode("utf-16-le"), r"is UTF-16LE text; re-encode it as UTF-8 \(iconv -f UTF-16LE "),
    (LINES.encode("utf-16-be"), r"is UTF-16BE text; re-encode it as UTF-8 \(iconv -f UTF-16BE "),
    (gzip.compress(LINES.encode() * 50), r"is a gzip archive, not a metadata file of text lines; "
                                         r"unpack it, then pass the dataset folder"),
    (np.random.default_rng(0).bytes(3000), r"is binary data, not a metadata file of text lines"),
    (b"ID3\x04\x00" + bytes(40), r"is an ID3-tagged audio file, not a metadata file of text"),
    (None, r"is a WAV file, not a metadata file of text lines; pass the dataset folder "
           r"\(metadata.csv and wavs/\) or its metadata file$"),
])
def test_a_metadata_file_that_is_not_text_is_named_with_what_it_is(tmp_path, content, message):
    folder = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16")])
    metadata = folder / "metadata.csv"
    if content is None:
        metadata = folder / "wavs" / "a.wav"     # an audio file given as the dataset
    else:
        metadata.write_bytes(content)
    for dataset in {folder, metadata} if content else {metadata}:
        with pytest.raises(CorpusError, match=re.escape(str(metadata)) + " " + message):
            load_corpus(dataset)


def test_metadata_lines_that_only_look_like_a_file_signature_are_text(tmp_path):
    folder = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16")])
    for lines, rejected in ((b"RIFF|A|\na|A|\n", [1]),
                            (b"a|A|\n" + b"b\x00|NUL|\n" * 3, [2, 3, 4])):
        (folder / "metadata.csv").write_bytes(lines)
        corpus = load_corpus(folder)
        assert [u.id for u in corpus.utterances] == ["a"]
        assert [r.line_number for r in corpus.rejected] == rejected


def test_relative_names_are_pathlibs(tmp_path):
    folder = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16")])
    (folder / "wavs" / "p1").mkdir()
    (folder / "wavs" / "a.wav").rename(folder / "wavs" / "p1" / "a.wav")
    (folder / "metadata.csv").write_text("p1/a|A|\n./p1/../p1/a.wav|again|\n")
    corpus = load_corpus(folder / "metadata.csv")
    for root in (corpus.root, corpus.root / "wavs"):
        assert relative_names(corpus.utterances, root) == \
            [u.path.relative_to(root).as_posix() for u in corpus.utterances]
    assert relative_names(corpus.utterances, corpus.root)[0] == "wavs/p1/a.wav"


def test_bom_crlf_and_blank_lines(tmp_path):
    folder = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16"),
                                           ("b", 0.5, 22050, 1, "pcm16")])
    (folder / "metadata.csv").write_bytes(b"\xef\xbb\xbfa|A|\r\n\r\nb|B|bee\r\n")
    corpus = load_corpus(folder)
    assert [(u.id, u.text, u.line_number) for u in corpus.utterances] == \
        [("a", "A", 1), ("b", "bee", 3)]


@pytest.mark.parametrize("line,message", [
    (b"no separators here", "expected 'id\\|text\\[\\|normalized text\\]'$"),
    (b"a2\tTab separated.\tTab separated.", "fields are separated by \\|, not tabs$"),
    (b"a2,Comma separated,Comma separated", "fields are separated by \\|, not commas$"),
    (b'{"audio_filepath": "/data/a2.wav", "text": "hi, there"}', "not JSON \\(a NeMo manifest"),
    (b"a2.wav|Say a | b.|Say a b.|", "5 '\\|'-separated fields, at most 4 \\(id\\|text"),
    (b"../../etc/passwd|x|", "outside"),
    (b"/abs/path.wav|x|", "outside"),
    (b"wavs/../../a|x|", "outside"),
    (b"missing|x|", "file not found$"),
    (b"wavs/a|x|", "wavs/wavs/a.wav: file not found; ids are relative to wavs/, so drop the "
                   "leading wavs/"),
    (b"a.wav|again|", "duplicate id 'a' \\(first on line 1\\)"),
    (b"caf\xe9|latin-1|", "not valid UTF-8"),
    (b"nul\x00byte|x|", "NUL character"),
    (b"x" * 300 + b"|name too long|", "cannot read \\(File name too long\\)"),
])
def test_bad_metadata_lines_are_rejected_by_line(tmp_path, line, message):
    folder = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16")])
    (folder / "metadata.csv").write_bytes(b"a|A|\n" + line + b"\n")
    corpus = load_corpus(folder)
    assert [u.id for u in corpus.utterances] == ["a"]
    [rejection] = corpus.rejected
    assert rejection.line_number == 2
    assert re.search(message, rejection.reason), rejection.reason


def test_a_bare_id_finds_its_file_by_the_first_suffix_that_exists(tmp_path):
    folder = write_corpus(tmp_path / "c", [(name, 0.5, 22050, 1, "pcm16")
                                           for name in ("both", "upper", "none")])
    y = synth_utterance(0.5, 22050, np.random.default_rng(0))
    soundfile.write(folder / "wavs" / "both.flac", y, 22050, subtype="PCM_16")
    (folder / "wavs" / "upper.wav").rename(folder / "wavs" / "upper.WAV")
    soundfile.write(folder / "wavs" / "upper.FLAC", y, 22050, subtype="PCM_16")
    (folder / "wavs" / "none.wav").unlink()
    corpus = load_corpus(folder)
    assert [u.path.name for u in corpus.utterances] == ["both.wav", "upper.WAV"]
    assert "none.wav: file not found" in corpus.rejected[0].reason


def test_audio_in_formats_the_decoder_does_not_take_is_named_with_the_fix(tmp_path):
    """An id naming an MP3 (or Ogg, Opus, ...) file, or a bare id whose only file is one, is
    skipped with the format and how to convert it, not as a missing WAV; a bare id with both
    finds its WAV."""
    folder = write_corpus(tmp_path / "c", [(name, 0.5, 22050, 1, "pcm16")
                                           for name in ("named", "beside", "both", "plain")])
    wavs = folder / "wavs"
    (wavs / "named.wav").rename(wavs / "named.mp3")
    (wavs / "beside.wav").rename(wavs / "beside.OGG")
    (wavs / "both.mp3").write_bytes(b"ID3")
    metadata = folder / "metadata.csv"
    metadata.write_text(metadata.read_text().replace("named|", "named.mp3|")
                        + "gone.opus|Missing.|\n")
    corpus = load_corpus(folder)
    assert [u.id for u in corpus.utterances] == ["both", "plain"]
    reasons = {r.entry: r.reason for r in corpus.rejected}
    assert reasons == {
        "named.mp3": f"{wavs / 'named.mp3'}: MP3 audio is not supported; convert it to WAV or "
                     "FLAC (e.g. ffmpeg -i named.mp3 named.wav) and list named.wav in the "
                     "metadata",
        "beside": f"{wavs / 'beside.OGG'}: Ogg audio is not supported; convert it to WAV or FLAC "
                  "(e.g. ffmpeg -i beside.OGG beside.wav)",
        "gone.opus": f"{wavs / 'gone.opus'}: Opus audio is not supported; convert it to WAV or "
                     "FLAC (e.g. ffmpeg -i gone.opus gone.wav) and list gone.wav in the metadata"}


def test_symbolic_links_inside_the_dataset_are_followed(tmp_path):
    """A wavs/ folder that links to the audio elsewhere, and a linked file in it: the job
    reads through both, and the manifest names the files by their place in the dataset."""
    audio = write_corpus(tmp_path / "audio", [("a", 0.5, 22050, 1, "pcm16"),
                                              ("b", 0.6, 22050, 1, "pcm16")])
    (tmp_path / "elsewhere").mkdir()
    (audio / "wavs" / "b.wav").rename(tmp_path / "elsewhere" / "b.wav")
    (audio / "wavs" / "b.wav").symlink_to(tmp_path / "elsewhere" / "b.wav")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "wavs").symlink_to(audio / "wavs", target_is_directory=True)
    (linked / "metadata.csv").write_text("a|A|\nb|B|\n")
    assert [u.path for u in load_corpus(linked).utterances] == \
        [linked.resolve() / "wavs" / "a.wav", linked.resolve() / "wavs" / "b.wav"]
    run_job(linked, tmp_path / "out.zarr", device="cpu", show_progress=False)
    store = FeatureStore(tmp_path / "out.zarr")
    assert store.ids == ("a", "b")
    assert len(store[1]["f0"]) == int(0.6 * 22050) // 256


def test_paths_that_are_not_files_are_named_and_never_waited_on(tmp_path):
    """A named pipe named like a WAV would block a reader until something writes to it; it, a
    folder and a symbolic link loop are each skipped, named with what they are."""
    folder = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16")])
    wavs = folder / "wavs"
    os.mkfifo(wavs / "pipe.wav")
    (wavs / "folder.wav").mkdir()
    (wavs / "loop.wav").symlink_to("loop.wav")
    (folder / "metadata.csv").write_text("a|A|\npipe|P|\nfolder|F|\nloop|L|\n")
    result = subprocess.run([sys.executable, "-m", "extract", "check", str(folder)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    for line, name, what in ((2, "pipe", "a named pipe, not an audio file"),
                             (3, "folder", "a folder, not an audio file"),
                             (4, "loop", "cannot read (Too many levels of symbolic links)")):
        assert f"line {line} ({name}): {wavs / name}.wav: {what}" in result.stdout, result.stdout
    assert "1 to extract, 3 to skip" in result.stdout


def test_a_corpus_with_nothing_usable_is_an_error(tmp_path):
    folder = write_corpus(tmp_path / "c", [("a", 0.5, 22050, 1, "pcm16")])
    (folder / "metadata.csv").write_text("missing|x|\n")
    with pytest.raises(CorpusError, match="no usable utterance(.|\n)*line 1 \\(missing\\)"):
        load_corpus(folder)


@pytest.mark.parametrize("fmt,bits", [("pcm16", 16), ("pcm24", 24), ("pcm32", 32),
                                      ("float32", 32)])
def test_wav_headers(tmp_path, fmt, bits):
    write_wav(tmp_path / "x.wav", np.zeros((1234, 2)), 44100, fmt)
    info = read_audio_info(tmp_path / "x.wav")
    assert (info.sample_rate, info.num_samples, info.channels, info.format) == \
        (44100, 1234, 2, fmt)


def with_large_chunks(plain: Path, out: Path) -> None:
    """A JUNK chunk before fmt (as recorders reserve) and a 100 kB odd-sized LIST chunk, with
    its pad byte, before data."""
    data = plain.read_bytes()
    junk = b"JUNK" + struct.pack("<I", 28) + bytes(28)
    listing = b"LIST" + struct.pack("<I", 100_001) + bytes(100_001) + b"\0"
    body = b"WAVE" + junk + data[12:36] + listing + data[36:]
    out.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def as_streamed(plain: Path, out: Path) -> None:
    """What ffmpeg writes to a pipe: 0xFFFFFFFF as the RIFF and data sizes."""
    data = bytearray(plain.read_bytes())
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    out.write_bytes(data)


def as_rf64(plain: Path, out: Path) -> None:
    """RF64, the 64-bit WAV some recorders always write (sizes in a ds64 chunk), by libsndfile."""
    info = soundfile.info(plain)
    soundfile.write(out, soundfile.read(plain, dtype="int32")[0], info.samplerate,
                    format="RF64", subtype=info.subtype)
    assert out.read_bytes()[:4] == b"RF64"


@pytest.mark.parametrize("rewrite", [with_large_chunks, as_streamed, as_rf64])
def test_wav_variants_give_the_store_of_plain_wavs(tmp_path, rewrite):
    """Each WAV rewritten as the variant has the plain file's sample count, and the store is
    the one made from the plain files."""
    plain = write_corpus(tmp_path / "plain", [("a", 0.8, 22050, 1, "pcm16"),
                                              ("b", 0.6, 48000, 2, "pcm24")])
    variant = tmp_path / "variant"
    (variant / "wavs").mkdir(parents=True)
    (variant / "metadata.csv").write_bytes((plain / "metadata.csv").read_bytes())
    for name in ("a", "b"):
        rewrite(plain / "wavs" / f"{name}.wav", variant / "wavs" / f"{name}.wav")
        assert read_audio_info(variant / "wavs" / f"{name}.wav").num_samples == \
            soundfile.info(plain / "wavs" / f"{name}.wav").frames
    assert_same_stores(plain, variant, ["a", "b"])


def test_a_flac_after_an_id3_tag_gives_the_store_of_the_untagged_flac(tmp_path):
    """Some taggers put an ID3v2 tag (here 300 kB, as with cover art) before FLAC data."""
    plain = write_corpus(tmp_path / "plain", [("a", 0.8, 22050, 1, "pcm16"),
                                              ("b", 0.6, 48000, 2, "pcm24")])
    tagged = tmp_path / "tagged"
    for folder in (plain, tagged):
        (folder / "wavs").mkdir(parents=True, exist_ok=True)
        (folder / "metadata.csv").write_text("a.flac|Text of a.|\nb.flac|Text of b.|\n")
    for name in ("a", "b"):
        samples, rate = soundfile.read(plain / "wavs" / f"{name}.wav", dtype="int32")
        soundfile.write(plain / "wavs" / f"{name}.flac", samples, rate, subtype="PCM_24")
        (tagged / "wavs" / f"{name}.flac").write_bytes(
            id3_tag(300_000) + (plain / "wavs" / f"{name}.flac").read_bytes())
        assert read_audio_info(tagged / "wavs" / f"{name}.flac").num_samples == len(samples)
    assert_same_stores(plain, tagged, ["a", "b"])


def test_cut_or_corrupted_headers_give_audio_errors_only(tmp_path):
    """Every prefix of the first 160 bytes, and 300 single-byte corruptions of the first 100,
    of a WAV, an RF64 WAV, a FLAC and a FLAC after an ID3 tag: read_audio_info returns or
    raises AudioError (which names the file), never another exception."""
    y = (np.sin(np.arange(3000) * 0.05) * 9000).astype(np.int16)
    soundfile.write(tmp_path / "a.wav", y, 22050)
    soundfile.write(tmp_path / "b.wav", y, 22050, format="RF64")
    soundfile.write(tmp_path / "c.flac", y, 22050)
    originals = [(tmp_path / name).read_bytes() for name in ("a.wav", "b.wav", "c.flac")]
    originals.append(id3_tag(30) + originals[-1])
    rng = np.random.default_rng(0)
    for data in originals:
        variants = [data[:k] for k in range(160)]
        for _ in range(300):
            corrupted = bytearray(data)
            corrupted[rng.integers(0, 100)] = rng.integers(0, 256)
            variants.append(bytes(corrupted))
        for variant in variants:
            (tmp_path / "x.wav").write_bytes(variant)
            try:
                read_audio_info(tmp_path / "x.wav")
            except AudioError as e:
                assert str(e).startswith(str(tmp_path / "x.wav"))


def test_not_a_wav_and_truncated(tmp_path):
    (tmp_path / "t.wav").write_text("hello")
    with pytest.raises(AudioError, match=r"neither a WAV \(RIFF or RF64\) nor a FLAC"):
        read_audio_info(tmp_path / "t.wav")
    write_wav(tmp_path / "x.wav", np.zeros(1000), 22050)
    data = (tmp_path / "x.wav").read_bytes()
    (tmp_path / "x.wav").write_bytes(data[:-100])
    with pytest.raises(AudioError, match="truncated"):
        read_audio_info(tmp_path / "x.wav")


@pytest.mark.parametrize("change,message", [
    ({"hop_length": 0}, "hop_length must be positive"),
    ({"fmax": 20000.0}, "fmax"),
    ({"window": "hamming"}, "window must be one of"),
    ({"n_ftt": 1024}, "unknown field"),
    ({"n_mels": "eighty"}, "n_mels must be a number"),
    ({"pitch": {"fmin": 10.0}}, "too short for pitch.fmin"),
    ({"pitch": {"method": "crepe"}}, "pitch.method must be one of"),
    ({"pitch": {"switch_prob": 1.0}}, "pitch.switch_prob must be in"),
    ({"pitch": {"method": "dio"}}, "needs a centred padding"),
    ({"pitch": {"whole_hop_extension": True}}, "whole_hop_extension needs pitch.padding reflect"),
    ({"pitch": {"whole_hop_extension": 1}}, "must be true or false"),
    ({"pitch": {"dtype": "float16"}}, "pitch.dtype must be one of"),
    ({"trim_top_db": -60.0}, "trim_top_db must be positive"),
    ({"trim_margin": 220}, "trim_margin needs trim_top_db"),
    ({"trim_top_db": 60.0, "trim_margin": -1}, "trim_margin must be >= 0"),
])
def test_preset_validation(change, message):
    base = dataclasses.asdict(load_preset("hifigan"))
    base.pop("name")
    base.update(change if "pitch" not in change else
                {"pitch": {**base["pitch"], **change["pitch"]}})
    with pytest.raises(PresetError, match=message):
        preset_from_dict("custom", base)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(PresetError, match="known presets: hifigan"):
        load_preset("hifi")


def test_a_preset_file_can_start_from_a_built_in_one(tmp_path):
    """`base: NAME`: the built-in YAML's fields, with the file's own over them (pitch fields one
    by one); errors as for any preset file."""
    import yaml

    from extract.config import preset_dir

    builtin = yaml.safe_load((preset_dir() / "hifigan.yaml").read_text())
    path = tmp_path / "hifigan-low.yaml"
    path.write_text("base: hifigan\nfmax: 7600\npitch:\n  fmin: 50\n  fmax: 600\n")
    preset = load_preset(str(path))
    expected = {**builtin, "fmax": 7600.0, "pitch": {**builtin["pitch"], "fmin": 50.0,
                                                     "fmax": 600.0}}
    expected.pop("description")
    got = dataclasses.asdict(preset)
    assert got.pop("name") == "hifigan-low"
    assert got.pop("description") == (f"{builtin['description']}; from hifigan, changed: "
                                      "fmax, pitch.fmin, pitch.fmax")
    assert {k: got[k] for k in expected if k != "pitch"} == \
        {k: v for k, v in expected.items() if k != "pitch"}
    assert {k: got["pitch"][k] for k in expected["pitch"]} == expected["pitch"]
    assert {k: v for k, v in got.items() if k not in expected} == \
        {k: v for k, v in dataclasses.asdict(load_preset("hifigan")).items()
         if k not in expected and k not in ("name", "description")}
    path.write_text("base: hifigan\ndescription: mine\n")
    assert load_preset(str(path)).description == "mine"
    for text, message in (("base: hifi\n", "base must name a built-in preset \\(hifigan, "),
                          ("base: [hifigan]\n", "base must name a built-in preset"),
                          ("base: hifigan\nhop_lenght: 128\n", "unknown field.*hop_lenght"),
                          ("base: hifigan\npitch: 50\n", "pitch must be a mapping"),
                          ("base: hifigan\npitch:\n  fmin: 10\n", "too short for pitch.fmin")):
        path.write_text(text)
        with pytest.raises(PresetError, match=message):
            load_preset(str(path))
