"""tts-extract: log-mel, pitch and energy for TTS corpora, into one Zarr store.

The loader's names load on first use (numpy, zarr, torch), so the command line starts without
them; the extraction job's heavier dependencies (DALI, torchaudio) load when a job runs.
"""

__version__ = "0.1.0"
__all__ = ["FeatureStore", "LengthBucketSampler", "StoreFormatError", "StoreReplacedError",
           "pad_collate", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        import extract.loader

        return getattr(extract.loader, name)
    raise AttributeError(f"module 'extract' has no attribute {name!r}")
