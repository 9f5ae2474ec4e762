"""`--against`: presets against the config files of the toolkits they mirror, transcribed below
(their mel settings and what sits around them), and the mismatches users make."""

import json

import pytest

from extract import cli as cli_module
from extract.config import load_preset, preset_dir
from extract.toolkit_config import compare_with_config

# jik876/hifi-gan config_v1.json
HIFIGAN_V1 = {
    "resblock": "1", "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002,
    "upsample_rates": [8, 8, 2, 2], "segment_size": 8192, "num_mels": 80, "num_freq": 1025,
    "n_fft": 1024, "hop_size": 256, "win_size": 1024, "sampling_rate": 22050, "fmin": 0,
    "fmax": 8000, "fmax_for_loss": None, "num_workers": 4,
    "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321", "world_size": 1},
}
# NVIDIA/BigVGAN configs/bigvgan_v2_22khz_80band_256x.json
BIGVGAN_V2_22K = {
    "upsample_rates": [4, 4, 2, 2, 2, 2], "cqtd_hop_lengths": [512, 256, 256],
    "segment_size": 65536, "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 256,
    "win_size": 1024, "sampling_rate": 22050, "fmin": 0, "fmax": None, "fmax_for_loss": None,
}
# jaywalnut310/vits configs/ljs_base.json
VITS_LJS = {
    "train": {"segment_size": 8192, "c_mel": 45},
    "data": {"max_wav_value": 32768.0, "sampling_rate": 22050, "filter_length": 1024,
             "hop_length": 256, "win_length": 1024, "n_mel_channels": 80, "mel_fmin": 0.0,
             "mel_fmax": None, "add_blank": True, "n_speakers": 0},
    "model": {"inter_channels": 192, "upsample_rates": [8, 8, 2, 2]},
}
# coqui-ai/TTS: the config.json recipes/ljspeech/fast_pitch/train_fast_pitch.py saves (its
# BaseAudioConfig arguments over TTS/config/shared_configs.py's defaults)
COQUI_FASTPITCH = {
    "audio": {"fft_size": 1024, "win_length": 1024, "hop_length": 256, "frame_shift_ms": None,
              "frame_length_ms": None, "stft_pad_mode": "reflect", "sample_rate": 22050,
              "resample": False, "preemphasis": 0.0, "ref_level_db": 20, "log_func": "np.log",
              "do_trim_silence": True, "trim_db": 60.0, "num_mels": 80, "mel_fmin": 0.0,
              "mel_fmax": 8000, "spec_gain": 1.0, "signal_norm": False, "pitch_fmax": 640.0,
              "pitch_fmin": 1.0},
    "model_args": {"out_channels": 80, "hidden_channels": 384},
}
# NVIDIA/NeMo examples/tts/conf/fastpitch_align_v1.05.yaml
NEMO_FASTPITCH = """
name: FastPitch
train_dataset: ???
pitch_fmin: 65.40639132514966
pitch_fmax: 2093.004522404789
sample_rate: 22050
n_mel_channels: 80
n_window_size: 1024
n_window_stride: 256
n_fft: 1024
lowfreq: 0
highfreq: 8000
window: hann
model:
  pitch_fmin: ${pitch_fmin}
  sample_rate: ${sample_rate}
  n_mel_channels: ${n_mel_channels}
  n_window_size: ${n_window_size}
  n_window_stride: ${n_window_stride}
  n_fft: ${n_fft}
  lowfreq: ${lowfreq}
  highfreq: ${highfreq}
  train_ds:
    dataset:
      manifest_filepath: ${train_dataset}
      sample_rate: ${model.sample_rate}
      n_fft: ${model.n_fft}
      win_length: ${model.n_window_size}
      hop_length: ${model.n_window_stride}
      n_mels: ${model.n_mel_channels}
      lowfreq: ${model.lowfreq}
      highfreq: ${model.highfreq}
      pitch_fmin: ${model.pitch_fmin}
  preprocessor:
    features: ${model.n_mel_channels}
    lowfreq: ${model.lowfreq}
    highfreq: ${model.highfreq}
    n_fft: ${model.n_fft}
    n_window_size: ${model.n_window_size}
    window_size: false
    n_window_stride: ${model.n_window_stride}
    window_stride: false
    sample_rate: ${model.sample_rate}
    log_zero_guard_value: 1e-05
"""
# NVIDIA/NeMo examples/tts/conf/hifigan/hifigan.yaml
NEMO_HIFIGAN = """
name: "HifiGan"
train_dataset: ???
sample_rate: 22050
n_mel_channels: 80
n_window_size: 1024
n_window_stride: 256
n_fft: 1024
lowfreq: 0
highfreq: 8000
window: hann
train_n_segments: 8192
defaults:
  - model/generator: v1
model:
  preprocessor:
    _target_: nemo.collections.asr.parts.preprocessing.features.FilterbankFeatures
    nfilt: ${n_mel_channels}
    lowfreq: ${lowfreq}
    highfreq: ${highfreq}
    n_fft: ${n_fft}
    n_window_size: ${n_window_size}
    n_window_stride: ${n_window_stride}
    pad_to: 0
    pad_value: -11.52
    sample_rate: ${sample_rate}
    log_zero_guard_type: clamp
    log_zero_guard_value: 1e-05
    exact_pad: true
  max_steps: 2500000
trainer:
  max_steps: ${model.max_steps}
"""
# shivammehta25/Matcha-TTS configs/data/ljspeech.yaml
MATCHA_LJSPEECH = """
_target_: matcha.data.text_mel_datamodule.TextMelDataModule
name: ljspeech
n_spks: 1
n_fft: 1024
n_feats: 80
sample_rate: 22050
hop_length: 256
win_length: 1024
f_min: 0
f_max: 8000
data_statistics:
  mel_mean: -5.536622
  mel_std: 2.116101
seed: ${seed}
"""
# gemelo-ai/vocos configs/vocos.yaml
VOCOS = """
data:
  init_args:
    train_params:
      sampling_rate: 24000
      num_samples: 16384
model:
  init_args:
    sample_rate: 24000
    feature_extractor:
      class_path: vocos.feature_extractors.MelSpectrogramFeatures
      init_args:
        sample_rate: 24000
        n_fft: 1024
        hop_length: 256
        n_mels: 100
        padding: center
    head:
      init_args:
        n_fft: 1024
        hop_length: 256
"""
# ESPnet2 TTS config.yaml (egs2/ljspeech/tts1, fastspeech2 with dio pitch): its frontend's
# settings and the pitch and energy extractors'
ESPNET = """
feats_extract: fbank
feats_extract_conf:
  n_fft: 1024
  hop_length: 256
  win_length: null
  fs: 22050
  fmin: 80
  fmax: 7600
  n_mels: 80
pitch_extract: dio
pitch_extract_conf:
  fs: 22050
  n_fft: 1024
  hop_length: 256
  f0max: 400
  f0min: 80
energy_extract: energy
energy_extract_conf:
  fs: 22050
  n_fft: 1024
  hop_length: 256
  win_length: null
"""

TOOLKIT_CONFIGS = {
    "hifigan": ("config_v1.json", HIFIGAN_V1),
    "bigvgan-v2-22k": ("bigvgan_v2_22khz_80band_256x.json", BIGVGAN_V2_22K),
    "vits": ("ljs_base.json", VITS_LJS),
    "coqui-fastpitch": ("config.json", COQUI_FASTPITCH),
    "nemo-fastpitch": ("fastpitch_align_v1.05.yaml", NEMO_FASTPITCH),
    "nemo-hifigan": ("hifigan.yaml", NEMO_HIFIGAN),
    "matcha": ("ljspeech.yaml", MATCHA_LJSPEECH),
    "vocos": ("vocos.yaml", VOCOS),
    "espnet": ("config.yaml", ESPNET),
}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("preset", sorted(TOOLKIT_CONFIGS))
def test_each_preset_matches_the_config_of_the_toolkit_it_mirrors(preset, tmp_path, capsys):
    path = write(tmp_path, *TOOLKIT_CONFIGS[preset])
    assert cli_module.main(["presets", preset, "--against", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"preset {preset} against {path}:\n")
    assert "DIFFERS" not in out and out.splitlines()[-1] == f"every setting {path} gives agrees"


def test_what_is_found_where_and_what_a_null_means(tmp_path):
    nemo = load_preset("nemo-fastpitch").to_dict()
    lines, differing = compare_with_config(nemo, write(tmp_path, "n.yaml", NEMO_FASTPITCH))
    assert differing == []
    hop = next(line for line in lines if line.startswith("  hop_length 256: "))
    assert hop.split(": ", 1)[1].split(", ") == [           # ${...} followed, each place named
        "n_window_stride 256", "model.n_window_stride 256",
        "model.train_ds.dataset.hop_length 256", "model.preprocessor.n_window_stride 256"]
    espnet = load_preset("espnet").to_dict()
    lines, _ = compare_with_config(espnet, write(tmp_path, "e.yaml", ESPNET))
    assert "  win_length 1024: feats_extract_conf.win_length null (= 1024), " \
           "energy_extract_conf.win_length null (= 1024)" in lines
    assert "  fmin 80: feats_extract_conf.fmin 80" in lines          # not pitch's f0min
    vocos = load_preset("vocos").to_dict()
    lines, _ = compare_with_config(vocos, write(tmp_path, "v.yaml", VOCOS))
    assert "  fmax 12000: not in the config" in lines
    own = preset_dir() / "hifigan.yaml"               # its pitch: fmin and fmax, a pitch range
    lines, differing = compare_with_config(load_preset("hifigan").to_dict(), own)
    assert differing == [] and "  fmin 0: fmin 0" in lines


def test_a_vocoder_config_that_differs_is_named_and_exits_1(tmp_path, capsys):
    bigvgan = write(tmp_path, "bigvgan.json", BIGVGAN_V2_22K)
    assert cli_module.main(["presets", "hifigan", "--against", str(bigvgan)]) == 1
    out = capsys.readouterr().out
    assert "  fmax 8000: fmax null (= 11025) DIFFERS\n" in out
    assert out.splitlines()[-1].startswith("fmax differs: ")
    vocos = write(tmp_path, "vocos.yaml", VOCOS)
    lines, differing = compare_with_config(load_preset("bigvgan-24k-100").to_dict(), vocos)
    assert differing == []                  # 24 kHz, 100 mels, hop 256: the numbers agree
    two_hops = dict(HIFIGAN_V1, data={"hop_size": 300})
    lines, differing = compare_with_config(load_preset("hifigan").to_dict(),
                                           write(tmp_path, "two.json", two_hops))
    assert differing == ["hop_length"]
    assert "  hop_length 256: hop_size 256, data.hop_size 300 DIFFERS" in lines


@pytest.mark.parametrize("name,content,message", [
    ("c.json", '{"a": 1,}', "c.json is not valid JSON: "),
    ("c.yaml", "a: [1\nb: 2\n", "c.yaml is not valid YAML: "),
    ("c.yaml", "- 1\n- 2\n", "does not hold a mapping of settings"),
    ("c.json", '{"batch_size": 16, "fmax_for_loss": null}', "names none of the mel settings"),
    ("c.yaml", "loop: &loop [*loop]\n", "names none of the mel settings"),   # contains itself
])
def test_a_config_that_cannot_be_compared_is_one_clear_error(name, content, message, tmp_path,
                                                             capsys):
    path = write(tmp_path, name, content)
    assert cli_module.main(["presets", "hifigan", "--against", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tts-extract: error: ") and message in err and len(err.splitlines()) == 1
    assert cli_module.main(["presets", "hifigan", "--against", str(tmp_path / "none")]) == 2
    assert "cannot read the config" in capsys.readouterr().err


def test_presets_against_a_config_lists_those_that_agree(tmp_path, capsys):
    hifigan = write(tmp_path, "config_v1.json", HIFIGAN_V1)
    assert cli_module.main(["presets", "--against", str(hifigan)]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"hifigan", "matcha", "nemo-hifigan"} <= listed                # 22050, 80, 0-8000
    assert not {"bigvgan-v2-22k", "vits", "espnet", "vocos"} & listed     # fmax, fmin, rate
    rate_44k = write(tmp_path, "44k.json", dict(HIFIGAN_V1, sampling_rate=44100))
    assert cli_module.main(["presets", "--against", str(rate_44k)]) == 1
    assert capsys.readouterr().out.startswith(f"no preset agrees with {rate_44k}'s mel settings")
