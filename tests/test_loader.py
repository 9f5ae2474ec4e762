import numpy as np
import pytest
import torch

from extract.loader import FeatureStore, LengthBucketSampler, pad_collate


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_with_workers(mixed_store, context):
    store = FeatureStore(mixed_store)
    sampler = LengthBucketSampler(store.lengths, batch_size=2, seed=1)
    loader = torch.utils.data.DataLoader(store, batch_sampler=sampler, collate_fn=pad_collate,
                                         num_workers=2, multiprocessing_context=context)
    seen = []
    for batch in loader:
        assert batch["mel"].shape[0] == len(batch["ids"]) == len(batch["lengths"])
        assert batch["mel"].shape[1] == int(batch["lengths"].max())
        assert batch["voiced"].dtype == torch.bool
        for k, utt_id in enumerate(batch["ids"]):
            n = int(batch["lengths"][k])
            direct = store[utt_id]
            torch.testing.assert_close(batch["mel"][k, :n], direct["mel"], rtol=0, atol=0)
            torch.testing.assert_close(batch["f0"][k, :n], direct["f0"], rtol=0, atol=0)
            assert not batch["mel"][k, n:].any()
            seen.append(utt_id)
    assert sorted(seen) == sorted(store.ids)


def test_length_bucket_sampler_covers_everything_and_groups_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 1000, size=1000)
    sampler = LengthBucketSampler(lengths, batch_size=16, pool_batches=10, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(sampler) == len(batches)
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[rng.choice(1000, 16)]) for _ in range(100)])
    assert spread < random_spread / 4
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert all(len(b) == 16 for b in LengthBucketSampler(lengths, 16, drop_last=True))


def test_item_access_by_position_and_id(mixed_store):
    store = FeatureStore(mixed_store)
    assert store[-1]["id"] == store.ids[-1]
    torch.testing.assert_close(store["c"]["mel"], store[2]["mel"])
    with pytest.raises(KeyError, match="no utterance"):
        store["nope"]
    with pytest.raises(IndexError):
        store[len(store)]
    assert store[np.int64(1)]["id"] == store[torch.tensor(1)]["id"] == store.ids[1]
    with pytest.raises(TypeError, match=r"position \(int\), not float"):
        store[1.5]
