"""The fields of a store's `tts_extract` attribute that readers rely on, and their check.

A store is data from elsewhere: a missing or mistyped field must be a clear error at open, not
a KeyError deep in a DataLoader worker. docs/FORMAT.md describes every field.
"""

from __future__ import annotations

from dataclasses import dataclass

NUMBER = (int, float)
NUMBER_OR_NULL = (int, float, type(None))     # null: no frame to take it over
KINDS = {int: "an integer", NUMBER: "a number", NUMBER_OR_NULL: "a number or null",
         str: "a string", bool: "true or false", dict: "a mapping", list: "a list"}


@dataclass(frozen=True)
class Each:
    """A mapping (or list) whose every value meets `spec`."""
    spec: object
    container: type = dict


# A spec is a type (or tuple of types) from KINDS, a dict of field specs, or Each(spec).
SPEAKER_STATS = {"f0_mean": NUMBER_OR_NULL, "f0_std": NUMBER_OR_NULL, "f0_voiced_frames": int,
                 "energy_voiced_mean": NUMBER_OR_NULL, "energy_voiced_std": NUMBER_OR_NULL}
RECORD = {
    "config": {"name": str, "description": str, "sample_rate": int, "n_fft": int,
               "win_length": int, "hop_length": int, "n_mels": int, "fmin": NUMBER,
               "fmax": NUMBER, "frame_count_rule": str, "frame_center_offset_s": NUMBER,
               "pitch": {"method": str, "fmin": NUMBER, "fmax": NUMBER}},
    "stats": {**SPEAKER_STATS, "mel_mean": list, "mel_std": list, "mel_mean_global": NUMBER,
              "mel_std_global": NUMBER, "energy_mean": NUMBER, "energy_std": NUMBER,
              "frames": int, "speakers": Each(SPEAKER_STATS)},
    "versions": dict,
    "manifest_sha256": str,
    "run": {"device": str, "ranks": int, "batch_size": int, "elapsed_s": NUMBER,
            "audio_s": NUMBER, "resumed": bool, "stage_s": Each(NUMBER)},
    "rejected": Each({"line": int, "entry": str, "reason": str}, list),
}
OPTIONAL = {"speakers", "run", "rejected"}      # fields that may be absent


def record_problem(record: dict) -> str | None:
    """What is wrong with a complete store's record (the first thing found), or None."""
    return _problem("", record, RECORD)


def _problem(where: str, value, spec) -> str | None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where} is not a mapping"
        for name, field_spec in spec.items():
            inner = f"{where}.{name}" if where else name
            if name not in value:
                if name in OPTIONAL:
                    continue
                return f"{inner} is missing"
            problem = _problem(inner, value[name], field_spec)
            if problem:
                return problem
        return None
    if isinstance(spec, Each):
        if not isinstance(value, spec.container):
            return f"{where} is not {KINDS[spec.container]}"
        keys = value if spec.container is dict else range(len(value))
        for key in keys:
            problem = _problem(f"{where}[{key!r}]", value[key], spec.spec)
            if problem:
                return problem
        return None
    if not isinstance(value, spec) or (isinstance(value, bool) and spec is not bool):
        return f"{where} is {value!r}, not {KINDS[spec]}"
    return None
