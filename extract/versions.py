"""The versions a store records and `tts-extract --version` prints: ours (also when run from a
source tree that was never installed) and our dependencies', read from their installed
distributions' metadata, so nothing heavy is imported."""

from __future__ import annotations

from importlib import metadata

import extract

DEPENDENCIES = ("torch", "torchaudio", "nvidia-dali-cuda130", "numpy", "zarr")


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
