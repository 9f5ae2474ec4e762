"""Loader: serve a finished store to training loops (numpy, zarr and torch only)."""

from extract.loader.batching import LengthBucketSampler, pad_collate
from extract.loader.feature_store import FeatureStore, StoreFormatError
from extract.loader.shard_reader import StoreReplacedError

__all__ = ["FeatureStore", "LengthBucketSampler", "StoreFormatError", "StoreReplacedError",
           "pad_collate"]
