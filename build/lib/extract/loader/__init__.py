"""Loader: serve a finished store to training loops (numpy, zarr and torch only)."""

from extract.loader.batching import LengthBucketSampler, pad_collate
from extract.loader.feature_store import FeatureStore, StoreFormatError

__all__ = ["FeatureStore", "LengthBucketSampler", "StoreFormatError", "pad_collate"]
