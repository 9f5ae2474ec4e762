"""tts-extract: log-mel, pitch and energy for TTS corpora, into one Zarr store.

Importing the package loads only the loader (numpy, zarr, torch); the extraction job's heavier
dependencies (DALI, torchaudio) load when a job runs.
"""

from extract.loader import FeatureStore, LengthBucketSampler, StoreFormatError, pad_collate

__version__ = "0.1.0"
__all__ = ["FeatureStore", "LengthBucketSampler", "StoreFormatError", "pad_collate",
           "__version__"]
