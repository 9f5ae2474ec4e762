"""Independent references, written from the toolkits' own source, not from our code.

Each is evaluated in float64 (Fourier transform, products, logs) from the toolkit's own tables:
the window and mel basis as the toolkit builds them (torch windows are float32 tables, librosa's
float64). Float32 transforms differ from that, and from each other, by up to 1e-3 in the log of
the lowest mel bins, where the DC region is a small difference of large sums.
"""

from __future__ import annotations

import numpy as np
import soundfile
import torch
import torchaudio
from librosa.filters import mel as librosa_mel_fn
from librosa.util import normalize


def hifigan_magnitude(y: torch.Tensor, n_fft=1024, hop_size=256, win_size=1024) -> torch.Tensor:
    """The magnitude step of jik876/hifi-gan meldataset.py mel_spectrogram (center=False), for
    y [1, L] -> [1, n_fft//2 + 1, T]. Only the deprecated real-valued stft output is replaced by
    return_complex + view_as_real."""
    hann_window = torch.hann_window(win_size).double()
    y = torch.nn.functional.pad(y.double().unsqueeze(1), (int((n_fft - hop_size) / 2),
                                                 int((n_fft - hop_size) / 2)), mode="reflect")
    y = y.squeeze(1)
    spec = torch.stft(y, n_fft, hop_length=hop_size, win_length=win_size, window=hann_window,
                      center=False, pad_mode="reflect", normalized=False, onesided=True,
                      return_complex=True)
    spec = torch.view_as_real(spec)
    return torch.sqrt(spec.pow(2).sum(-1) + (1e-9))


def hifigan_mel(y: torch.Tensor, n_fft=1024, num_mels=80, sampling_rate=22050, hop_size=256,
                win_size=1024, fmin=0, fmax=8000) -> torch.Tensor:
    """meldataset.py mel_spectrogram, for y [1, L] -> [1, 80, T]."""
    mel = librosa_mel_fn(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax,
                         dtype=np.float64)
    mel_basis = torch.from_numpy(mel)
    spec = torch.matmul(mel_basis, hifigan_magnitude(y, n_fft, hop_size, win_size))
    return torch.log(torch.clamp(spec, min=1e-5))


def load_for_hifigan(path, target_rate: int = 22050) -> torch.Tensor:
    """What MelDataset feeds mel_spectrogram: samples / 32768 (soundfile's float scaling),
    mono by channel mean, resampled in float64 with kaiser_best settings if needed (HiFi-GAN
    itself requires 22.05 kHz files), then normalize(audio) * 0.95."""
    audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != target_rate:
        audio = torchaudio.functional.resample(
            torch.from_numpy(audio), rate, target_rate, lowpass_filter_width=64,
            rolloff=0.9475937167399596, resampling_method="sinc_interp_kaiser",
            beta=14.769656459379492).numpy()
    audio = normalize(audio) * 0.95
    return torch.FloatTensor(audio).unsqueeze(0)


def frame_energy_reference(y: torch.Tensor) -> np.ndarray:
    """L2 norm over frequency of HiFi-GAN's magnitude spectrum (NeMo's energy definition)."""
    return torch.linalg.norm(hifigan_magnitude(y), dim=1)[0].numpy()


# --- One function per toolkit, each a transcription of its feature code (file named). Input:
# --- float audio [L] in [-1, 1] at the toolkit's rate as that toolkit loads it; output: its
# --- log-mel as [T, n_mels] numpy.

def bigvgan_mel(y: np.ndarray, sampling_rate: int, num_mels: int, fmax) -> np.ndarray:
    """NVIDIA/BigVGAN meldataset.py: MelDataset normalises to 0.95, then mel_spectrogram, which is
    HiFi-GAN's (librosa mel with fmax None meaning sr / 2)."""
    audio = torch.FloatTensor(normalize(y.astype(np.float64)) * 0.95)[None]
    return hifigan_mel(audio, num_mels=num_mels, sampling_rate=sampling_rate,
                       fmax=fmax)[0].T.numpy()


def matcha_mel(y: np.ndarray) -> np.ndarray:
    """Matcha-TTS matcha/utils/audio.py mel_spectrogram (HiFi-GAN's) on torchaudio-loaded audio
    (no peak normalisation)."""
    return hifigan_mel(torch.FloatTensor(y)[None])[0].T.numpy()


def vits_features(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """jaywalnut310/vits mel_processing.py spectrogram_torch and spec_to_mel_torch (with
    dynamic_range_compression_torch), audio / max_wav_value: ([T, 513] linear, [T, 80] mel)."""
    n_fft, hop_size, win_size = 1024, 256, 1024
    audio = torch.from_numpy(y.astype(np.float64))[None]
    hann_window = torch.hann_window(win_size).double()
    audio = torch.nn.functional.pad(audio.unsqueeze(1), (int((n_fft - hop_size) / 2),
                                                         int((n_fft - hop_size) / 2)),
                                    mode="reflect").squeeze(1)
    spec = torch.stft(audio, n_fft, hop_length=hop_size, win_length=win_size,
                      window=hann_window, center=False, pad_mode="reflect", normalized=False,
                      onesided=True, return_complex=True)
    spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-6)
    mel_basis = torch.from_numpy(librosa_mel_fn(sr=22050, n_fft=n_fft, n_mels=80, fmin=0.0,
                                                fmax=None, dtype=np.float64))
    mel = torch.log(torch.clamp(torch.matmul(mel_basis, spec), min=1e-5))
    return spec[0].T.numpy(), mel[0].T.numpy()


def nemo_mel(y: np.ndarray, exact_pad: bool, log_zero_guard_type: str) -> np.ndarray:
    """NeMo asr/parts/preprocessing/features.py FilterbankFeatures.forward in eval mode with the
    TTS configs' settings: symmetric hann, zero padding (exact_pad: (n_fft - hop) / 2 and
    center=False; else center=True), mag_power 1, librosa mel 0-8000, log guard 1e-5."""
    n_fft, hop, win = 1024, 256, 1024
    x = torch.from_numpy(y.astype(np.float64))[None]
    window = torch.hann_window(win, periodic=False).double()
    if exact_pad:
        x = torch.nn.functional.pad(x.unsqueeze(1), ((n_fft - hop) // 2, (n_fft - hop) // 2),
                                    "constant").squeeze(1)
    x = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, center=not exact_pad,
                   window=window, return_complex=True, pad_mode="constant")
    x = torch.sqrt(torch.view_as_real(x).pow(2).sum(-1))
    fb = torch.tensor(librosa_mel_fn(sr=22050, n_fft=n_fft, n_mels=80, fmin=0, fmax=8000),
                      dtype=torch.float64).unsqueeze(0)
    x = torch.matmul(fb, x)
    x = torch.log(x + 1e-5) if log_zero_guard_type == "add" else \
        torch.log(torch.clamp(x, min=1e-5))
    return x[0].T.numpy()


def dle_fastpitch_mel(y: np.ndarray) -> np.ndarray:
    """DeepLearningExamples FastPitch common/stft.py STFT.transform (conv1d with a windowed
    Fourier basis, reflect pad n_fft / 2) and common/layers.py TacotronSTFT.mel_spectrogram."""
    from scipy.signal import get_window

    filter_length, hop_length, win_length = 1024, 256, 1024
    fourier_basis = np.fft.fft(np.eye(filter_length))
    cutoff = int(filter_length / 2 + 1)
    fourier_basis = np.vstack([np.real(fourier_basis[:cutoff, :]),
                               np.imag(fourier_basis[:cutoff, :])])
    forward_basis = torch.from_numpy(fourier_basis[:, None, :])
    fft_window = torch.from_numpy(get_window("hann", win_length, fftbins=True)).float().double()
    forward_basis *= fft_window
    audio = torch.from_numpy(y.astype(np.float64))[None]
    input_data = audio.view(1, 1, -1)
    input_data = torch.nn.functional.pad(input_data.unsqueeze(1),
                                         (int(filter_length / 2), int(filter_length / 2), 0, 0),
                                         mode="reflect").squeeze(1)
    forward_transform = torch.nn.functional.conv1d(input_data, forward_basis, stride=hop_length,
                                                   padding=0)
    real_part, imag_part = forward_transform[:, :cutoff, :], forward_transform[:, cutoff:, :]
    magnitudes = torch.sqrt(real_part ** 2 + imag_part ** 2)
    mel_basis = torch.from_numpy(librosa_mel_fn(sr=22050, n_fft=filter_length, n_mels=80,
                                                fmin=0.0, fmax=8000.0, dtype=np.float64))
    mel_output = torch.matmul(mel_basis, magnitudes)
    return torch.log(torch.clamp(mel_output, min=1e-5) * 1)[0].T.numpy()


def coqui_mel(y: np.ndarray) -> np.ndarray:
    """coqui-ai/TTS utils/audio/numpy_transforms.py stft, spec_to_mel and amp_to_db as the
    FastPitch recipe configures them (spec_gain 1, np.log, signal_norm false)."""
    import librosa

    stft = librosa.stft(y=y.astype(np.float64), n_fft=1024, hop_length=256, win_length=1024,
                        window="hann", center=True, pad_mode="reflect")
    mel_basis = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000,
                                    dtype=np.float64)
    mel = np.dot(mel_basis, np.abs(stft))
    return (1.0 * np.log(np.maximum(1e-8, mel))).T


def espnet_mel(y: np.ndarray) -> np.ndarray:
    """espnet2/layers/stft.py Stft (center, reflect, periodic hann), LogMelFbank's
    sqrt(clamp(power, 1e-10)) and espnet2/layers/log_mel.py LogMel (log_base 10, clamp 1e-10)."""
    x = torch.from_numpy(y.astype(np.float64))[None]
    spec = torch.stft(x, n_fft=1024, hop_length=256, win_length=1024,
                      window=torch.hann_window(1024).double(), center=True, normalized=False,
                      onesided=True, pad_mode="reflect", return_complex=True)
    spec = torch.view_as_real(spec).transpose(1, 2)                 # [B, T, F, 2]
    input_power = spec[..., 0] ** 2 + spec[..., 1] ** 2
    input_amp = torch.sqrt(torch.clamp(input_power, min=1.0e-10))
    melmat = torch.from_numpy(librosa_mel_fn(sr=22050, n_fft=1024, n_mels=80, fmin=80,
                                             fmax=7600, htk=False, dtype=np.float64).T)
    mel_feat = torch.matmul(input_amp, melmat)
    mel_feat = torch.clamp(mel_feat, min=1e-10)
    return (mel_feat.log() / torch.tensor(10.0, dtype=torch.float64).log())[0].numpy()


def vocos_mel(y: np.ndarray) -> np.ndarray:
    """gemelo-ai/vocos feature_extractors.py MelSpectrogramFeatures (padding "center")."""
    mel_spec = torchaudio.transforms.MelSpectrogram(sample_rate=24000, n_fft=1024,
                                                    hop_length=256, n_mels=100, center=True,
                                                    power=1).double()
    mel = mel_spec(torch.from_numpy(y.astype(np.float64))[None])
    return torch.log(torch.clip(mel, min=1e-7))[0].T.numpy()


# Each preset's log-mel as its toolkit computes it: audio [L] -> [T, n_mels].
PRESET_MELS = {
    "hifigan": lambda y: bigvgan_mel(y, 22050, 80, 8000),
    "bigvgan-v2-22k": lambda y: bigvgan_mel(y, 22050, 80, None),
    "bigvgan-24k-100": lambda y: bigvgan_mel(y, 24000, 100, 12000),
    "matcha": matcha_mel,
    "vits": lambda y: vits_features(y)[1],
    "nemo-fastpitch": lambda y: nemo_mel(y, exact_pad=False, log_zero_guard_type="add"),
    "nemo-hifigan": lambda y: nemo_mel(y, exact_pad=True, log_zero_guard_type="clamp"),
    "dle-fastpitch": dle_fastpitch_mel,
    "coqui-fastpitch": coqui_mel,
    "espnet": espnet_mel,
    "vocos": vocos_mel,
}


def coqui_trim_silence(wav: np.ndarray) -> np.ndarray:
    """coqui-ai/TTS AudioProcessor.trim_silence as the FastPitch recipe configures it
    (do_trim_silence, trim_db 60, win_length 1024, hop_length 256, 22050 Hz)."""
    import librosa

    margin = int(22050 * 0.01)
    wav = wav[margin:-margin]
    return librosa.effects.trim(wav, top_db=60.0, frame_length=1024, hop_length=256)[0]


def coqui_f0(wav: np.ndarray) -> np.ndarray:
    """coqui-ai/TTS AudioProcessor.compute_f0 with the FastPitch recipe's pitch_fmax 640 Hz (and
    fmin 65 Hz, see configs/coqui-fastpitch.yaml): a signal of a whole number of hops is first
    extended by hop/2 reflected samples, then numpy_transforms.compute_f0 runs librosa.pyin
    (center, reflect) on it as float64 and zeroes unvoiced frames."""
    import librosa

    hop = 256
    if len(wav) % hop == 0:
        wav = np.pad(wav, (0, hop // 2), mode="reflect")
    f0, voiced, _ = librosa.pyin(wav.astype(np.double), fmin=65.0, fmax=640.0, sr=22050,
                                 frame_length=1024, hop_length=hop, pad_mode="reflect",
                                 center=True)
    f0[~voiced] = 0.0
    return f0


def dle_fastpitch_pitch(path, mel_len: int) -> np.ndarray:
    """DeepLearningExamples FastPitch fastpitch/data_function.py estimate_pitch(method="pyin"):
    librosa.load, pyin from note_to_hz("C2") to note_to_hz("C7") with frame_length 1024 (hop
    1024 // 4), NaN as 0, zero-padded to the mel's length."""
    import librosa

    snd, sr = librosa.load(path)
    pitch_mel, _, _ = librosa.pyin(snd, fmin=librosa.note_to_hz("C2"),
                                   fmax=librosa.note_to_hz("C7"), frame_length=1024)
    assert np.abs(mel_len - pitch_mel.shape[0]) <= 1.0
    pitch_mel = np.where(np.isnan(pitch_mel), 0.0, pitch_mel)
    return np.pad(pitch_mel, (0, mel_len - len(pitch_mel)))


def espnet_pitch(y: np.ndarray, n_frames: int) -> np.ndarray:
    """espnet2/tts/feats_extract/dio.py Dio._calculate_f0 before its continuous and log steps:
    pyworld.dio + stonemask at 80-400 Hz, frame_period 1000 * 256 / 22050, zero-padded or cut
    to the mel's n_frames (_adjust_num_frames)."""
    import pyworld

    x = y.astype(np.double)
    f0, timeaxis = pyworld.dio(x, 22050, f0_floor=80, f0_ceil=400, frame_period=1000 * 256 / 22050)
    f0 = pyworld.stonemask(x, f0, timeaxis, 22050)
    return np.pad(f0, (0, max(0, n_frames - len(f0))))[:n_frames]
