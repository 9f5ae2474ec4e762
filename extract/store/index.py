"""A store's per-utterance index, as the job plans it and the writer records and compacts it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UtteranceIndex:
    """A store's per-utterance arrays: frame `offsets` [n + 1], sample `spans` [n, 2] and the
    string `fields` (id, text, speaker) with n values each."""
    offsets: np.ndarray
    spans: np.ndarray
    fields: dict[str, list[str]]

    def kept(self, removed: list[int]) -> np.ndarray:
        """Mask of the utterances not in `removed`."""
        return np.isin(np.arange(len(self.spans)), removed, invert=True)

    def without(self, removed: list[int]) -> UtteranceIndex:
        keep = self.kept(removed)
        return UtteranceIndex(
            np.concatenate([[0], np.cumsum(np.diff(self.offsets)[keep])]).astype(np.int64),
            self.spans[keep],
            {name: [v for v, k in zip(values, keep) if k] for name, values in self.fields.items()})

    def same_as(self, other: UtteranceIndex) -> bool:
        return (np.array_equal(self.offsets, other.offsets)
                and np.array_equal(self.spans, other.spans) and self.fields == other.fields)
