"""The versions a store records and `tts-extract --version` prints: ours (also when run from a
source tree that was never installed) and our dependencies', read from their installed
distributions' metadata, so nothing heavy is imported; and whether they can run the job."""

from __future__ import annotations

import re
from importlib import metadata, util

import extract

DEPENDENCIES = ("torch", "torchaudio", "nvidia-dali-cuda130", "numpy", "zarr")
JOB_TORCH = (2, 11)     # the oldest torch (and matching torchaudio) the job runs on
JOB_INSTALL = "pip install torch==2.11.0 torchaudio==2.11.0 nvidia-dali-cuda130"


def dependency_versions() -> dict[str, str]:
    """{"tts-extract": ours, dependency: its version or "not installed"}."""
    versions = {"tts-extract": extract.__version__}
    for name in DEPENDENCIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def version_line() -> str:
    """'tts-extract 0.1.0 (torch 2.11.0, ...)'."""
    versions = dependency_versions()
    ours = versions.pop("tts-extract")
    return f"tts-extract {ours} (" + ", ".join(f"{k} {v}" for k, v in versions.items()) + ")"


def job_environment_problem(versions: dict[str, str], has_dali: bool) -> str | None:
    """What keeps the extraction job from running with these `dependency_versions` and DALI
    (any CUDA build of it) found or not, and the fix; None when nothing does. (The loader
    alone needs only torch >= 2.4, numpy and zarr.)"""
    lacking = {"torchaudio": versions["torchaudio"] == "not installed",
               "DALI (nvidia-dali-cuda130)": not has_dali}
    missing = [name for name, absent in lacking.items() if absent]
    if missing:
        return (f"the extraction job needs {' and '.join(missing)}, which this environment "
                f"lacks (an install for the loader alone?); {JOB_INSTALL}")
    torch_release, audio_release = (_release(versions[n]) for n in ("torch", "torchaudio"))
    if torch_release < JOB_TORCH or audio_release != torch_release:
        return (f"the extraction job needs torch >= {'.'.join(map(str, JOB_TORCH))} with the "
                f"torchaudio of the same release, found torch {versions['torch']} and "
                f"torchaudio {versions['torchaudio']}; {JOB_INSTALL}")
    return None


def _release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as '2.11.0+cu130'."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def dali_found() -> bool:
    """Whether DALI can be imported (without importing it)."""
    try:
        return util.find_spec("nvidia.dali") is not None
    except ImportError:             # no `nvidia` package at all
        return False
