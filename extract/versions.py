"""The versions a store records and `tts-extract --version` prints: ours and our dependencies'.
Read from the installed distributions' metadata, so nothing heavy is imported."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTIONS = ("tts-extract", "torch", "torchaudio", "nvidia-dali-cuda130", "numpy", "zarr")


def dependency_versions() -> dict[str, str]:
    """{distribution: version, or "not installed"}."""
    versions = {}
    for name in DISTRIBUTIONS:
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
