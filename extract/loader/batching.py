"""Length-bucketing batch sampler and padding collate for `FeatureStore` in a DataLoader.

>>> loader = torch.utils.data.DataLoader(                              # doctest: +SKIP
...     store, batch_sampler=LengthBucketSampler(store.lengths, batch_size=16),
...     collate_fn=pad_collate, num_workers=4)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

PADDED_FEATURES = ("mel", "f0", "voiced", "voiced_prob", "energy")


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of utterances of similar length, in random order.

    Each epoch shuffles the indices, sorts pools of `batch_size * pool_batches` by length,
    cuts them into batches and shuffles the batches. Call `set_epoch` for a new order.

    Under distributed training each process gets its own share: every rank builds the same
    batches (same seed and epoch) and takes every num_replicas-th one, so each utterance goes
    to one rank. num_replicas and rank default to torch.distributed's world size and rank once
    its process group is up (as DistributedSampler's do), else to 1 and 0. Every rank gets the
    same number of batches, as DDP needs: the first batches are used again to fill the last
    round, or with drop_last that round is dropped (as are batches under batch_size).

    >>> sampler = LengthBucketSampler([5, 9, 7, 3, 4], batch_size=2, num_replicas=2, rank=1)
    >>> len(sampler)
    2
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True,
                 drop_last: bool = False, pool_batches: int = 50, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas), got rank {rank} of "
                             f"num_replicas {num_replicas}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.pool = batch_size * pool_batches
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch."""
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start:start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i:i + self.batch_size].tolist()
                        for i in range(0, len(pool), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return self._share(batches)

    def _share(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's batches of the whole epoch's, cycled or cut to whole rounds."""
        if self.num_replicas == 1 or not batches:
            return batches
        rounds = len(batches) // self.num_replicas if self.drop_last else \
            -(-len(batches) // self.num_replicas)
        total = rounds * self.num_replicas
        cycled = (batches * -(-total // len(batches)))[:total]
        return cycled[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        """This rank's batches an epoch, counted without building them (training loops may ask
        every step): pools of self.pool utterances, each cut into batches, shared in rounds."""
        full_pools, rest = divmod(len(self.lengths), self.pool)
        last = rest // self.batch_size if self.drop_last else -(-rest // self.batch_size)
        count = full_pools * (self.pool // self.batch_size) + last
        if self.num_replicas == 1:
            return count
        return count // self.num_replicas if self.drop_last else -(-count // self.num_replicas)


def pad_collate(items: list[dict]) -> dict:
    """Stack items, zero-padding the time axis: mel [B, T, n_mels] ([B, n_mels, T] for a store
    opened with mel_layout="bins_first"; linear likewise), f0/voiced/voiced_prob/energy [B, T]
    (those the items hold: a store opened with `features` serves only those), lengths [B]
    (frames), ids, texts (and speakers) as lists."""
    bins_first = items[0].get("mel_layout") == "bins_first"
    lengths = torch.tensor([frame_count(item, bins_first) for item in items], dtype=torch.int64)
    batch = {"ids": [item["id"] for item in items], "texts": [item["text"] for item in items],
             "lengths": lengths}
    if "speaker" in items[0]:
        batch["speakers"] = [item["speaker"] for item in items]
    for name in (*PADDED_FEATURES, "linear"):
        if name not in items[0]:
            continue
        values = [item[name] for item in items]
        if bins_first and values[0].dim() == 2:
            padded = torch.nn.utils.rnn.pad_sequence([v.T for v in values], batch_first=True)
            batch[name] = padded.transpose(1, 2)
        else:
            batch[name] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True)
    return batch


def frame_count(item: dict, bins_first: bool) -> int:
    """Frames of a store item, whichever of its frame arrays it holds."""
    name = next(n for n in (*PADDED_FEATURES, "linear") if n in item)
    return item[name].shape[1 if bins_first and item[name].dim() == 2 else 0]
