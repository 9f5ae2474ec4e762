"""Exports into FastPitch's, NeMo's and Coqui's layouts, read back the way those toolkits read
them, and the loader's layout and normalisation options, per speaker."""

import base64
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import zarr

from extract.demo import synth_utterance
from extract import export as export_module
from extract.export import ExportError, export_store
from extract.input.audio import write_wav
from extract.job import run_job
from extract.loader import FeatureStore, pad_collate

from conftest import write_corpus

SPEAKERS = ["p1", "p2", "p1", "p2", "p1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A two-speaker corpus (fourth metadata field) extracted with the dle-fastpitch preset."""
    root = tmp_path_factory.mktemp("export")
    corpus = write_corpus(root / "c", [(f"s{k}", 1.0 + 0.3 * k, 22050, 1, "pcm16")
                                       for k in range(5)])
    lines = (corpus / "metadata.csv").read_text().splitlines()
    (corpus / "metadata.csv").write_text("\n".join(f"{line}|{speaker}" for line, speaker
                                                   in zip(lines, SPEAKERS)) + "\n")
    out = root / "s.zarr"
    run_job(corpus, out, preset="dle-fastpitch", device="cpu", show_progress=False)
    return out


def dle_filelist(dataset_path, filelist, has_speakers: bool) -> list[tuple]:
    """DeepLearningExamples FastPitch common/utils.py load_filepaths_and_text."""
    def split_line(root, line):
        parts = line.strip().split("|")
        if has_speakers:
            paths, non_paths = parts[:-2], parts[-2:]
        else:
            paths, non_paths = parts[:-1], parts[-1:]
        return tuple(str(Path(root, p)) for p in paths) + tuple(non_paths)

    with open(filelist, encoding="utf-8") as f:
        return [split_line(dataset_path, line) for line in f]


@pytest.mark.parametrize("with_speakers", [True, False])
def test_fastpitch_export_loads_like_prepare_dataset_output(store, tmp_path, with_speakers):
    """TTSDataset with --load-mel-from-disk reads the filelist's paths, text and (with
    --n-speakers > 1) an integer speaker; speakers.txt names them."""
    if not with_speakers:
        store = shutil.copytree(store, tmp_path / "one_speaker.zarr")
        shutil.rmtree(store / "utterances" / "speaker")
    assert export_store(store, "fastpitch", tmp_path / "fp") == 5
    features = FeatureStore(store)
    names = {}
    if with_speakers:
        for line in (tmp_path / "fp" / "speakers.txt").read_text().splitlines():
            number, name = line.split("|")
            names[int(number)] = name
        assert sorted(names) == list(range(len(set(SPEAKERS))))
    else:
        assert not (tmp_path / "fp" / "speakers.txt").exists()
    for row in dle_filelist(tmp_path / "fp", tmp_path / "fp" / "filelist.txt", with_speakers):
        if with_speakers:                           # data_function.py TTSDataset.__getitem__
            mel_path, pitch_path, text, speaker = row
            speaker = int(speaker)
        else:
            mel_path, pitch_path, text = row
        mel = torch.load(mel_path)                  # get_mel, load_mel_from_disk
        pitch = torch.load(pitch_path)              # get_pitch, load_pitch_from_disk
        item = features[Path(mel_path).stem]
        assert mel.dtype == torch.float32 and mel.shape == (80, len(item["f0"]))
        assert pitch.shape == (1, mel.shape[1])
        torch.testing.assert_close(mel, item["mel"].T, rtol=0, atol=0)
        torch.testing.assert_close(pitch[0], item["f0"], rtol=0, atol=0)
        assert text == item["text"]
        if with_speakers:
            assert names[speaker] == item["speaker"]


def test_fastpitch_export_gives_train_py_the_corpus_pitch_statistics(store, tmp_path):
    """FastPitch's normalize_pitch standardises the nonzero pitch of the exported files by
    --pitch-mean and --pitch-std; the export prints them for this corpus, and the number of
    speakers."""
    result = subprocess.run([sys.executable, "-m", "extract", "export", str(store), "--to",
                             "fastpitch", str(tmp_path / "fp"), "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    flags = re.search(r"--pitch-mean (\S+) --pitch-std (\S+) --n-speakers 2 ", result.stdout)
    pitch = torch.cat([torch.load(path)[0] for path in (tmp_path / "fp" / "pitch").iterdir()])
    voiced = pitch[pitch != 0].double()
    assert float(flags[1]) == pytest.approx(voiced.mean().item(), abs=1e-5)
    assert float(flags[2]) == pytest.approx(voiced.std(unbiased=False).item(), abs=1e-5)


def coqui_string2filename(string):
    """TTS/tts/datasets/dataset.py string2filename."""
    return base64.urlsafe_b64encode(string.encode("utf-8")).decode("utf-8", "ignore")


def test_coqui_export_loads_like_coquis_f0_cache(trimmed_reference, tmp_path):
    """F0Dataset.compute_or_load finds every file, and load_stats reads what its precompute
    would have saved: statistics of the f0 after its LongTensor collate."""
    cache = tmp_path / "f0_cache"
    result = subprocess.run([sys.executable, "-m", "extract", "export", str(trimmed_reference),
                             "--to", "coqui", str(cache), "--dataset-name", "lj"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stderr                   # the store has Coqui's own preset
    assert f"exporting: [{'#' * 24}] 36/36 utt" in result.stderr
    features = FeatureStore(trimmed_reference)
    root, collated = "/data/LJSpeech-1.1/", []
    for utt_id in features.ids:
        audio_file = os.path.join(root, "wavs", utt_id + ".wav")         # formatters.ljspeech
        relfilepath = os.path.splitext(os.path.relpath(audio_file, root))[0]  # add_extra_keys
        pitch_file = os.path.join(cache, coqui_string2filename(f"lj#{relfilepath}") + "_pitch.npy")
        pitch = np.load(pitch_file).astype(np.float32)
        np.testing.assert_array_equal(pitch, features[utt_id]["f0"].numpy())
        collated.append(torch.LongTensor(pitch))
    nonzeros = np.concatenate([v[np.where(v != 0.0)[0]] for v in collated])
    stats = np.load(cache / "pitch_stats.npy", allow_pickle=True).item()
    assert stats["mean"].astype(np.float32) == np.float32(np.mean(nonzeros))
    assert stats["std"].astype(np.float32) == pytest.approx(np.float32(np.std(nonzeros)), rel=1e-6)
    assert len(os.listdir(cache)) == len(features) + 1


def test_nemo_export_loads_like_compute_features_output(store, tmp_path):
    export_store(store, "nemo", tmp_path / "nemo")
    features = FeatureStore(store)
    manifest = [json.loads(line) for line in
                (tmp_path / "nemo" / "manifest.json").read_text().splitlines()]
    assert [e["speaker"] for e in manifest] == SPEAKERS
    pitch_by_speaker, energy_by_speaker = {}, {}
    for entry in manifest:
        name = entry["audio_filepath"][:-4]
        loaded = {f: torch.from_numpy(np.load(tmp_path / "nemo" / f / f"{name}.npy"))
                  for f in ("mel_spec", "pitch", "voiced_mask", "energy")}
        item = features[name]
        assert loaded["mel_spec"].shape == (80, len(item["f0"]))
        assert loaded["voiced_mask"].dtype == torch.bool
        torch.testing.assert_close(loaded["pitch"], item["f0"], rtol=0, atol=0)
        mask = loaded["voiced_mask"]                   # compute_feature_stats.py's mask_field
        for by_speaker, key in ((pitch_by_speaker, "pitch"), (energy_by_speaker, "energy")):
            for group in ("default", entry["speaker"]):
                by_speaker.setdefault(group, []).append(loaded[key][mask])
    # create_speaker_map.py over the manifest; TextToSpeechDataset looks each speaker up
    speaker_list = sorted({str(entry["speaker"]) for entry in manifest})
    speaker_map = json.loads((tmp_path / "nemo" / "speakers.json").read_text())
    assert speaker_map == {speaker_list[i]: i for i in range(len(speaker_list))}
    stats = json.loads((tmp_path / "nemo" / "feature_stats.json").read_text())
    assert set(stats) == {"default", "p1", "p2"}
    for group in stats:
        for key, by_speaker in (("pitch", pitch_by_speaker), ("energy", energy_by_speaker)):
            values = torch.cat(by_speaker[group]).double()
            assert stats[group][f"{key}_mean"] == pytest.approx(values.mean().item(), rel=1e-6)
            assert stats[group][f"{key}_std"] == pytest.approx(values.std().item(), rel=1e-5)


def test_export_refuses_ids_outside_and_non_empty_folders(store, tmp_path):
    hostile = tmp_path / "hostile.zarr"
    shutil.copytree(store, hostile)
    ids = zarr.open_group(str(hostile), mode="r+")["utterances/id"]
    ids[1:2] = np.array(["../../escaped"], dtype=object)   # a scalar fails on numpy 1.x zarr
    with pytest.raises(ExportError, match="'../../escaped' would be written outside"):
        export_store(hostile, "fastpitch", tmp_path / "out" / "fp")
    assert not (tmp_path / "escaped.pt").exists() and not (tmp_path / "out").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_store(store, "nemo", tmp_path / "full")
    with pytest.raises(ExportError, match="--to must be one of"):
        export_store(store, "espnet", tmp_path / "x")
    with pytest.raises(ValueError, match=r"open_for_export\(path, 'fastpitch'\)"):
        export_store(FeatureStore(store), "fastpitch", tmp_path / "x")   # [T, n_mels] mels
    assert not (tmp_path / "x").exists()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ExportError, match="a_file exists and is not a folder"):
        export_store(store, "nemo", tmp_path / "a_file")
    for inside in (hostile, hostile / "energy", hostile / "new"):       # the store's own files
        with pytest.raises(ExportError, match="is inside the store"):
            export_store(hostile, "nemo", inside, overwrite=True)
    assert not (hostile / "new").exists() and not (hostile / "manifest.json").exists()


@pytest.mark.parametrize("to,first_file", [("fastpitch", "mels/s0.pt"),
                                            ("nemo", "mel_spec/s0.npy"), ("coqui", None)])
def test_an_export_that_cannot_be_written_is_one_clear_line(store, tmp_path, to, first_file):
    """RLIMIT_FSIZE makes writes past 400 bytes of a file fail (EFBIG), as a full disk would
    (ENOSPC). np.save to a path used to leave truncated Coqui f0 files and exit 0."""
    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (400, 400))

    out = tmp_path / to
    result = subprocess.run([sys.executable, "-m", "extract", "export", str(store), "--to", to,
                             str(out), "--quiet"], capture_output=True, text=True,
                            preexec_fn=small_disk)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("note:")]
    file = out / (first_file or f"{export_module.coqui_file_name('', 's0')}_pitch.npy")
    assert errors == [f"tts-extract: error: cannot write the export to {out}: File too large "
                      f"({file})"]


def test_a_speaker_without_voiced_frames_is_normalised_by_the_corpus(tmp_path, capsys):
    """Speaker "mute" has one silent file and so no f0 statistics: its energy is standardised
    by the corpus's voiced-frame statistics, its f0 is 0. NeMo's export gives it NaN
    statistics, as compute_feature_stats.py does, which NeMo's normalisation survives. A store
    without any voiced frame cannot be normalised, and says so."""
    corpus = write_corpus(tmp_path / "c", [("a", 1.0, 22050, 1, "pcm16"),
                                           ("b", 1.2, 22050, 1, "pcm16")])
    write_wav(corpus / "wavs" / "quiet.wav", np.zeros(22050), 22050)
    with open(corpus / "metadata.csv") as f:
        lines = [f"{line}|p1" for line in f.read().splitlines()] + ["quiet|Quiet.|Quiet.|mute"]
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    run_job(corpus, tmp_path / "s.zarr", device="cpu", show_progress=False)
    plain, normal = FeatureStore(tmp_path / "s.zarr"), FeatureStore(tmp_path / "s.zarr",
                                                                    normalize=True)
    assert plain.stats["speakers"]["mute"]["f0_mean"] is None
    assert ("speakers: 2, 1-2 utterances each (median 1.5); f0 and energy statistics per "
            "speaker; 1 with no voiced frame ('mute': normalize=True uses the corpus's "
            "statistics for them)\n") in plain.describe()
    raw, item, s = plain["quiet"], normal["quiet"], plain.stats
    assert not raw["voiced"].any() and not item["f0"].any()
    expected = (raw["energy"].double() - s["energy_voiced_mean"]) / s["energy_voiced_std"]
    torch.testing.assert_close(item["energy"].double(), expected, rtol=1e-5, atol=1e-5)
    export_store(tmp_path / "s.zarr", "nemo", tmp_path / "nemo")
    assert "mute has fewer than 2 voiced frames" in capsys.readouterr().err
    stats = json.loads((tmp_path / "nemo" / "feature_stats.json").read_text())
    assert all(math.isnan(value) for value in stats["mute"].values())
    for utt_id, speaker in (("quiet", "mute"), ("a", "p1")):
        # NeMo's MeanVarianceSpeakerNormalization.process on what compute_features.py loads
        pitch, voiced = (torch.from_numpy(np.load(tmp_path / "nemo" / name / f"{utt_id}.npy"))
                         for name in ("pitch", "voiced_mask"))
        pitch = (pitch - stats[speaker]["pitch_mean"]) / stats[speaker]["pitch_std"]
        pitch[~voiced] = 0.0
        assert pitch.isfinite().all() and voiced.any() == (speaker == "p1")
    (corpus / "metadata.csv").write_text("quiet|Quiet.|Quiet.|mute\n")
    run_job(corpus, tmp_path / "silent.zarr", device="cpu", show_progress=False)
    with pytest.raises(ValueError, match="no voiced frame to normalise by"):
        FeatureStore(tmp_path / "silent.zarr", normalize=True)


def test_loader_layout_and_per_speaker_normalisation(store):
    plain = FeatureStore(store)
    bins = FeatureStore(store, mel_layout="bins_first", normalize=True)
    assert list(bins.speakers) == SPEAKERS
    for i in range(len(plain)):
        a, b = plain[i], bins[i]
        torch.testing.assert_close(b["mel"], a["mel"].T)
        s = plain.stats["speakers"][a["speaker"]]
        voiced = a["voiced"]
        expected = (a["f0"][voiced].double() - s["f0_mean"]) / s["f0_std"]
        torch.testing.assert_close(b["f0"][voiced].double(), expected, rtol=1e-5, atol=1e-5)
        assert not b["f0"][~voiced].any()
        expected = (a["energy"].double() - s["energy_voiced_mean"]) / s["energy_voiced_std"]
        torch.testing.assert_close(b["energy"].double(), expected, rtol=1e-5, atol=1e-5)
    # per-speaker statistics against the frames themselves
    for speaker in ("p1", "p2"):
        f0 = torch.cat([plain[i]["f0"][plain[i]["voiced"]] for i in range(len(plain))
                        if SPEAKERS[i] == speaker]).double()
        assert plain.stats["speakers"][speaker]["f0_mean"] == pytest.approx(f0.mean().item())
        assert plain.stats["speakers"][speaker]["f0_std"] == \
            pytest.approx(f0.std(unbiased=False).item(), rel=1e-6)
    batch = pad_collate([bins[0], bins[3]])
    assert batch["mel"].shape == (2, 80, int(batch["lengths"].max()))
    assert batch["speakers"] == ["p1", "p2"]


def matcha_data_statistics(mels: list[torch.Tensor], out_channels: int = 80) -> dict:
    """Matcha-TTS matcha/utils/generate_data_statistics.py compute_data_statistics, over batches
    of 2 [n_feats, T] mels zero-padded as its TextMelBatchCollate pads them."""
    total_mel_sum = 0
    total_mel_sq_sum = 0
    total_mel_len = 0
    for first in range(0, len(mels), 2):
        batch = mels[first:first + 2]
        y = torch.zeros((len(batch), out_channels, max(m.shape[1] for m in batch)))
        for k, mel in enumerate(batch):
            y[k, :, :mel.shape[1]] = mel
        total_mel_len += torch.sum(torch.tensor([m.shape[1] for m in batch]))
        total_mel_sum += torch.sum(y)
        total_mel_sq_sum += torch.sum(torch.pow(y, 2))
    data_mean = total_mel_sum / (total_mel_len * out_channels)
    data_std = torch.sqrt((total_mel_sq_sum / (total_mel_len * out_channels))
                          - torch.pow(data_mean, 2))
    return {"mel_mean": data_mean.item(), "mel_std": data_std.item()}


def test_matcha_statistics_are_one_mean_and_std_over_all_bins(mixed_store):
    """The store's statistics and `inspect` give what Matcha's data_statistics would be."""
    store = FeatureStore(mixed_store, mel_layout="bins_first")
    mel = torch.cat([store[i]["mel"] for i in range(len(store))], dim=1).double()
    assert store.stats["mel_mean_global"] == pytest.approx(mel.mean().item(), rel=1e-9)
    assert store.stats["mel_std_global"] == pytest.approx(mel.std(unbiased=False).item(),
                                                          rel=1e-6)
    expected = matcha_data_statistics([store[i]["mel"] for i in range(len(store))])
    shown = re.search(r"log-mel mean (\S+) std (\S+) over all bins \(Matcha's data_statistics",
                      store.describe())
    assert float(shown[1]) == pytest.approx(expected["mel_mean"], rel=1e-5)
    assert float(shown[2]) == pytest.approx(expected["mel_std"], rel=1e-5)


def test_nemo_manifest_names_each_utterances_own_audio_file(tmp_path):
    """FLAC, upper-case suffixes and subfolders: the store records each utterance's file, and
    NeMo finds the audio (audio_dir / audio_filepath) and its features where
    features.py _get_feature_filepath puts them (the relative path, suffix .npy)."""
    corpus = write_corpus(tmp_path / "c", [("a", 0.6, 22050, 1, "pcm16"),
                                           ("up", 0.7, 22050, 1, "pcm16")])
    (corpus / "wavs" / "up.wav").rename(corpus / "wavs" / "up.WAV")
    y = synth_utterance(0.8, 22050, np.random.default_rng(1))
    soundfile.write(corpus / "wavs" / "fl.flac", y, 22050, subtype="PCM_16")
    (corpus / "wavs" / "sub").mkdir()
    write_wav(corpus / "wavs" / "sub" / "n.wav", y, 22050)
    with open(corpus / "metadata.csv", "a") as f:
        f.write("fl|Text of fl.|\nsub/n.wav|Text of n.|\n")
    run_job(corpus, tmp_path / "s.zarr", device="cpu", show_progress=False)
    store = FeatureStore(tmp_path / "s.zarr")
    assert store.audio_files == ("a.wav", "up.WAV", "fl.flac", "sub/n.wav")
    export_store(tmp_path / "s.zarr", "nemo", tmp_path / "nemo")
    for line in (tmp_path / "nemo" / "manifest.json").read_text().splitlines():
        relative = Path(json.loads(line)["audio_filepath"])
        assert (corpus / "wavs" / relative).is_file()
        assert (tmp_path / "nemo" / "mel_spec" / relative.with_suffix(".npy")).is_file()
