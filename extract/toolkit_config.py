"""A toolkit's own config file against a store's (or preset's) mel settings.

A vocoder fed other mels than it was trained on makes noise, and the two sides are set in
different files. Toolkits name the same settings in their own words (HiFi-GAN and BigVGAN
config.json: sampling_rate, hop_size, win_size, num_mels; VITS: filter_length,
n_mel_channels, mel_fmax; Coqui: fft_size, mel_fmin; NeMo: n_window_stride, lowfreq,
highfreq, with ${...} references; Matcha: n_feats, f_min; ESPnet: fs; Vocos: n_mels), at any
depth. `compare_with_config` finds each of them anywhere in the file and compares.

    lines, differing = compare_with_config(store.config, "config_v1.json")
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

# our config key -> the names toolkits give it
SETTING_NAMES = {
    "sample_rate": ("sample_rate", "sampling_rate", "sr", "fs"),
    "n_fft": ("n_fft", "fft_size", "filter_length"),
    "win_length": ("win_length", "win_size", "n_window_size"),
    "hop_length": ("hop_length", "hop_size", "n_window_stride", "n_shift"),
    "n_mels": ("n_mels", "num_mels", "n_mel_channels", "n_feats", "nfilt"),
    "fmin": ("fmin", "mel_fmin", "f_min", "lowfreq"),
    "fmax": ("fmax", "mel_fmax", "f_max", "highfreq"),
}
REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")     # OmegaConf's ${a.b}, absolute
MAX_REFERENCE_DEPTH = 20
PITCH_SECTION = re.compile(r"pitch|f0", re.IGNORECASE)


def read_config(path: str | Path) -> dict:
    """A JSON or YAML config file as a mapping; ValueError naming the file otherwise."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot read the config {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a text file (not UTF-8: {e.reason})") from e
    try:
        config = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path} is not valid YAML: {getattr(e, 'problem', None) or e}{where}"
                         ) from e
    if not isinstance(config, dict):
        raise ValueError(f"{path} does not hold a mapping of settings")
    return config


def _entries(node, path: str = "", inside: frozenset = frozenset()
             ) -> Iterator[tuple[str, str, object]]:
    """(dotted path, key, value) of every mapping entry in a nested config (once around a YAML
    alias that contains itself)."""
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else ()
    inside = inside | {id(node)}
    for key, value in items:
        where = f"{path}.{key}" if path else str(key)
        yield where, str(key), value
        if id(value) not in inside:
            yield from _entries(value, where, inside)


def _resolve(value, root: dict, depth: int = 0):
    """A value with OmegaConf's whole-value reference `${a.b}` followed from the root (NeMo's
    configs); None where the reference leads nowhere."""
    match = REFERENCE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return value
    node = root
    for part in match[1].split("."):
        if not isinstance(node, dict) or part not in node or depth >= MAX_REFERENCE_DEPTH:
            return None
        node = node[part]
    return _resolve(node, root, depth + 1)


def mel_settings(config: dict) -> dict[str, list[tuple[str, object]]]:
    """Our setting name -> [(where in the config, value)], for every entry named as a toolkit
    names it whose value is a number or null (null: the toolkit's default), except in a
    section about pitch (`pitch:` in our presets, ESPnet's `pitch_extract_conf`), whose fmin
    and fmax are a pitch range."""
    by_name = {name: ours for ours, names in SETTING_NAMES.items() for name in names}
    found: dict[str, list[tuple[str, object]]] = {}
    for where, key, value in _entries(config):
        if PITCH_SECTION.search(where.rpartition(".")[0]):
            continue
        if key in by_name and not isinstance(value, (dict, list)):
            value = _resolve(value, config)
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                found.setdefault(by_name[key], []).append((where, value))
    return found


def _meaning(setting: str, value, ours: dict):
    """What a null means where the toolkits leave it null: fmax the Nyquist frequency (librosa
    and torchaudio's default), win_length n_fft (torch.stft's)."""
    if value is not None:
        return value
    if setting == "fmax":
        return ours["sample_rate"] / 2
    if setting == "win_length":
        return ours["n_fft"]
    return None


def settings_in_file(path: str | Path) -> dict[str, list[tuple[str, object]]]:
    """`mel_settings` of the config file at `path`; ValueError where it names none of them."""
    found = mel_settings(read_config(path))
    if not found:
        names = ", ".join(name for names in SETTING_NAMES.values() for name in names)
        raise ValueError(f"{path} names none of the mel settings (looked for {names}); is it a "
                         "vocoder's or acoustic model's config?")
    return found


def compare_with_config(ours: dict, path: str | Path) -> tuple[list[str], list[str]]:
    """Our config (a store's `config`, or Preset.to_dict()) against the toolkit config at
    `path`: a line per setting, and the settings that differ."""
    return compare_settings(ours, settings_in_file(path))


def compare_settings(ours: dict, found: dict[str, list[tuple[str, object]]]
                     ) -> tuple[list[str], list[str]]:
    """Our config against settings found in a config file (`mel_settings`): a line per
    setting, and the settings that differ."""
    lines, differing = [], []
    for setting in SETTING_NAMES:
        theirs = []
        for where, value in found.get(setting, []):
            meaning = _meaning(setting, value, ours)
            if meaning is None:
                theirs.append(f"{where} null (set some other way)")
            elif float(meaning) == float(ours[setting]):
                theirs.append(f"{where} {_shown(value, meaning)}")
            else:
                theirs.append(f"{where} {_shown(value, meaning)} DIFFERS")
                differing.append(setting)
        lines.append(f"  {setting} {ours[setting]:g}: "
                     + (", ".join(theirs) if theirs else "not in the config"))
    return lines, sorted(set(differing), key=list(SETTING_NAMES).index)


def _shown(value, meaning) -> str:
    return f"{value:g}" if value is not None else f"null (= {meaning:g})"
