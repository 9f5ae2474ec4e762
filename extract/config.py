"""Presets: the full definition of every feature, loaded from configs/*.yaml and validated.

A preset is a frozen dataclass, so a job's configuration can be written into the store and
compared exactly. Unknown keys, wrong types and impossible values raise `PresetError` naming the
preset and the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

WINDOWS = ("hann_periodic", "hann_symmetric")
# how the toolkit builds its window table: torch.hann_window in float32 arithmetic, a float64
# window rounded to float32 (scipy's, then .float()), or float64 throughout (librosa)
WINDOW_TABLES = ("torch", "rounded_float32", "float64")
# *_half: pad (n_fft - hop) / 2 each side, stft center=False, len // hop frames centred at
# t * hop + hop / 2; *_center: pad n_fft / 2 (stft center=True), len // hop + 1 frames at t * hop
PADDINGS = ("reflect_half", "zero_half", "reflect_center", "zero_center")
MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", "none")
LOGS = ("ln_clamp", "ln_add", "log10_clamp")     # ln(max(x, floor)), ln(x + floor), log10(max)
ENERGIES = ("magnitude_l2", "log_mel_l2")        # per-frame L2 norm of |STFT| or of the log-mel
PITCH_METHODS = ("pyin", "yin", "dio")
PITCH_PADDINGS = ("zero", "reflect")
PITCH_DTYPES = ("float32", "float64")      # what pyin and yin frames are computed in
# FastPitch's and NeMo's pyin range, librosa.note_to_hz("C2") and note_to_hz("C7")
C2_HZ, C7_HZ = 65.40639132514966, 2093.004522404789
BINS_PER_SEMITONE = 10      # pyin's pitch bins: 0.1 semitone
FRAME_COUNT_RULES = {"half": "num_samples // hop_length",
                     "center": "num_samples // hop_length + 1"}


def pitch_bin_count(fmin: float, fmax: float) -> int:
    """pyin's pitch bins from fmin to fmax, as librosa.pyin counts them (601 for C2-C7)."""
    return math.floor(12 * BINS_PER_SEMITONE * math.log2(fmax / fmin)) + 1


def transition_width(max_transition_rate: float, hop_length: int, sample_rate: int) -> int:
    """Bins reachable in one frame, as librosa.pyin derives it (odd; 51 at 22.05 kHz, hop 256)."""
    semitones = round(max_transition_rate * 12 * hop_length / sample_rate)
    return semitones * BINS_PER_SEMITONE + 1


class PresetError(ValueError):
    """A preset name, file or value is invalid."""


class UnknownPresetError(PresetError):
    """No preset has that name."""


@dataclass(frozen=True)
class PitchConfig:
    """Pitch on the mel frames. `pyin` reproduces librosa.pyin; `dio` reproduces WORLD's Dio
    and StoneMask as pyworld runs them (ESPnet's pitch); `yin` is a fast single-threshold
    option. threshold and silence_db apply to yin; switch_prob, no_trough_prob and
    max_transition_rate (octaves per second) to pyin, with librosa's defaults; frame_length,
    padding, whole_hop_extension and dtype to pyin and yin."""
    method: str = "pyin"
    fmin: float = C2_HZ
    fmax: float = C7_HZ
    frame_length: int = 1024
    threshold: float = 0.2
    silence_db: float = -60.0
    switch_prob: float = 0.01
    no_trough_prob: float = 0.01
    max_transition_rate: float = 35.92
    padding: str = "zero"         # how frames at the edges are filled (librosa's pad_mode)
    whole_hop_extension: bool = False   # Coqui's compute_f0: a signal of a whole number of
    #                                     hops first gets hop/2 more samples, reflected
    dtype: str = "float32"        # the float type of the audio the toolkit gives librosa.pyin,
    #                               which its difference function runs in (Coqui: float64)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    mirrors: str
    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    peak_normalize: float | None = None
    window: str = "hann_periodic"
    padding: str = "reflect_half"
    window_table: str = "torch"
    magnitude_eps: float = 0.0    # |X| = sqrt(max(re^2 + im^2 + magnitude_eps, power_floor))
    power_floor: float = 0.0
    mel_scale: str = "slaney"
    mel_norm: str = "slaney"
    log: str = "ln_clamp"
    log_floor: float = 1e-5
    energy: str = "magnitude_l2"
    store_linear: bool = False    # also store |X| as `linear` (e.g. VITS's input)
    # Silence trimming, as Coqui's AudioProcessor.trim_silence: cut trim_margin samples off each
    # end, then keep librosa.effects.trim's span (RMS over win_length frames every hop_length,
    # within trim_top_db of the loudest frame). null: no trimming.
    trim_top_db: float | None = None
    trim_margin: int = 0
    pitch: PitchConfig = field(default_factory=PitchConfig)

    @property
    def centered(self) -> bool:
        return self.padding.endswith("_center")

    @property
    def trims(self) -> bool:
        return self.trim_top_db is not None

    @property
    def frame_count_rule(self) -> str:
        return FRAME_COUNT_RULES["center" if self.centered else "half"]

    @property
    def frame_center_offset_s(self) -> float:
        """Time of frame 0's centre; frame t is centred at this + t * hop / sample_rate."""
        return self.frame_center_offset / self.sample_rate

    @property
    def frame_center_offset(self) -> int:
        """Sample at frame 0's centre."""
        return 0 if self.centered else self.hop_length // 2

    @property
    def pad_amount(self) -> int:
        return self.n_fft // 2 if self.centered else (self.n_fft - self.hop_length) // 2

    def num_frames(self, num_samples):
        """Frames for `num_samples` samples at the preset's rate (an int or a tensor)."""
        return num_samples // self.hop_length + (1 if self.centered else 0)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["frame_count_rule"] = self.frame_count_rule
        d["frame_center_offset_s"] = self.frame_center_offset_s
        return d

    def to_yaml(self) -> str:
        """Every field, defaults included, as a preset file that --preset takes back as it is
        (or edited), headed by the frame grid it gives."""
        fields = dataclasses.asdict(self)
        del fields["name"]
        return (f"# preset {self.name}: {self.frame_count_rule} frames, frame t centred at "
                f"sample {self.frame_center_offset} + t * {self.hop_length}\n"
                + yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=1000))


def preset_dir() -> Path:
    return Path(str(resources.files("extract.configs")))


DEFAULT_PRESET = "hifigan"


def preset_names() -> list[str]:
    """Every YAML file in configs/, the default first."""
    return sorted((p.stem for p in preset_dir().glob("*.yaml")),
                  key=lambda name: (name != DEFAULT_PRESET, name))


def available_presets() -> dict[str, str]:
    """Preset name -> one-line description, default first."""
    return {name: load_preset(name).description for name in preset_names()}


def load_preset(name_or_path: str) -> Preset:
    """Load and validate a preset by name (configs/NAME.yaml) or by path to a YAML file.

    A file may start from a built-in preset: with `base: NAME` it takes that preset's fields,
    and its own fields replace them (those under `pitch` one by one).

    >>> load_preset("hifigan").hop_length
    256
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = preset_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(preset_names())
            raise UnknownPresetError(f"unknown preset {name_or_path!r}; known presets: {known}")
    elif not path.is_file():
        raise PresetError(f"preset file {path} does not exist")
    raw = _read_fields(path)
    if "base" in raw:
        raw = _over_base(path, raw)
    return preset_from_dict(path.stem, raw)


def _read_fields(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PresetError(f"preset {path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise PresetError(f"preset {path}: expected a mapping of fields")
    return raw


def _over_base(path: Path, raw: dict) -> dict:
    """A preset file's fields over those of the built-in preset it names as `base`; unless it
    gives a description, the base's, saying what changed."""
    raw = dict(raw)
    base = raw.pop("base")
    if base not in preset_names():
        raise UnknownPresetError(f"preset {path}: base must name a built-in preset "
                                 f"({', '.join(preset_names())}), got {base!r}")
    fields = _read_fields(preset_dir() / f"{base}.yaml")
    pitch = _pop_pitch(raw, str(path))
    changed = [*raw, *(f"pitch.{key}" for key in pitch)]
    fields["description"] = (f"{fields['description']}; from {base}, changed: "
                             f"{', '.join(changed) or 'nothing'}")
    fields.update(raw)
    fields["pitch"] = {**(fields.get("pitch") or {}), **pitch}
    return fields


def _pop_pitch(raw: dict, where: str) -> dict:
    """raw's pitch fields (a mapping; {} when absent), taken out of raw."""
    pitch = raw.pop("pitch", None) or {}
    if not isinstance(pitch, dict):
        raise PresetError(f"preset {where}: pitch must be a mapping of fields, got {pitch!r}")
    return pitch


def preset_from_dict(name: str, raw: dict) -> Preset:
    raw = dict(raw)
    pitch = _build(PitchConfig, _pop_pitch(raw, name), f"{name}.pitch")
    preset = _build(Preset, {"name": name, **raw, "pitch": pitch}, name)
    _validate(preset)
    return preset


def _build(cls, raw: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PresetError(f"preset {where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    missing = [n for n, f in fields.items() if n not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise PresetError(f"preset {where}: missing field(s) {missing}")
    values = {}
    for key, value in raw.items():
        kind = fields[key].type
        if kind in ("int", "float") or (kind == "float | None" and value is not None):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PresetError(f"preset {where}: {key} must be a number, got {value!r}")
            if kind == "int" and value != int(value):
                raise PresetError(f"preset {where}: {key} must be an integer, got {value!r}")
            value = int(value) if kind == "int" else float(value)
        elif kind == "str" and not isinstance(value, str):
            raise PresetError(f"preset {where}: {key} must be a string, got {value!r}")
        elif kind == "bool" and not isinstance(value, bool):
            raise PresetError(f"preset {where}: {key} must be true or false, got {value!r}")
        values[key] = value
    return cls(**values)


def _validate(p: Preset) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise PresetError(f"preset {p.name}: {message}")

    for key, allowed in (("window", WINDOWS), ("window_table", WINDOW_TABLES),
                         ("padding", PADDINGS), ("mel_scale", MEL_SCALES),
                         ("mel_norm", MEL_NORMS), ("log", LOGS), ("energy", ENERGIES)):
        need(getattr(p, key) in allowed, f"{key} must be one of {allowed}, got {getattr(p, key)!r}")
    for key, allowed in (("method", PITCH_METHODS), ("padding", PITCH_PADDINGS),
                         ("dtype", PITCH_DTYPES)):
        need(getattr(p.pitch, key) in allowed,
             f"pitch.{key} must be one of {allowed}, got {getattr(p.pitch, key)!r}")
    for key in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
        need(getattr(p, key) > 0, f"{key} must be positive, got {getattr(p, key)}")
    need(p.win_length <= p.n_fft, f"win_length ({p.win_length}) must be <= n_fft ({p.n_fft})")
    need(p.hop_length <= p.n_fft, f"hop_length ({p.hop_length}) must be <= n_fft ({p.n_fft})")
    need(p.centered or (p.n_fft - p.hop_length) % 2 == 0,
         f"n_fft - hop_length must be even for padding {p.padding}")
    need(0 <= p.fmin < p.fmax <= p.sample_rate / 2,
         f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={p.fmin} fmax={p.fmax}")
    need(p.peak_normalize is None or 0 < p.peak_normalize <= 1,
         f"peak_normalize must be in (0, 1] or null, got {p.peak_normalize}")
    need(p.trim_top_db is None or p.trim_top_db > 0,
         f"trim_top_db must be positive or null, got {p.trim_top_db}")
    need(p.trim_margin >= 0, f"trim_margin must be >= 0, got {p.trim_margin}")
    need(p.trims or p.trim_margin == 0, "trim_margin needs trim_top_db")
    need(p.log_floor > 0 and p.magnitude_eps >= 0 and p.power_floor >= 0,
         "log_floor must be > 0, magnitude_eps and power_floor >= 0")
    q = p.pitch
    need(not q.whole_hop_extension or (q.padding == "reflect" and q.method != "dio"),
         "pitch.whole_hop_extension needs pitch.padding reflect and a framed method (pyin, yin)")
    need(q.method != "dio" or p.centered,
         f"pitch.method dio estimates on frames at t * hop_length, so it needs a centred "
         f"padding (reflect_center or zero_center), got {p.padding}")
    need(0 < q.fmin < q.fmax <= p.sample_rate / 2,
         f"need 0 < pitch.fmin < pitch.fmax <= sample_rate/2, got {q.fmin}, {q.fmax}")
    need(math.ceil(p.sample_rate / q.fmin) < q.frame_length,
         f"pitch.frame_length ({q.frame_length}) is too short for pitch.fmin={q.fmin} Hz")
    need(math.floor(p.sample_rate / q.fmax) >= 2,
         f"pitch.fmax ({q.fmax}) is too high for sample_rate {p.sample_rate}")
    need(0 < q.threshold < 1, f"pitch.threshold must be in (0, 1), got {q.threshold}")
    need(0 < q.switch_prob < 1 and 0 <= q.no_trough_prob <= 1,
         f"pitch.switch_prob must be in (0, 1) and pitch.no_trough_prob in [0, 1], got "
         f"{q.switch_prob} and {q.no_trough_prob}")
    need(q.max_transition_rate > 0,
         f"pitch.max_transition_rate must be positive, got {q.max_transition_rate}")
    bins = pitch_bin_count(q.fmin, q.fmax)
    width = transition_width(q.max_transition_rate, p.hop_length, p.sample_rate)
    highest = (bins - 1) // BINS_PER_SEMITONE * p.sample_rate / (12 * p.hop_length)
    need(q.method != "pyin" or width <= bins,
         f"pitch.max_transition_rate ({q.max_transition_rate} octaves/s) moves pyin up to "
         f"{width} bins a frame, more than the {bins} from pitch.fmin to pitch.fmax (librosa.pyin "
         f"refuses it too); at hop_length {p.hop_length} and sample_rate {p.sample_rate}, at "
         f"most {highest:.4g}")
