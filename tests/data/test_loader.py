import torch

from selfsup.data.loader import BatchLoader, epoch_permutation


def _images(n):
    # Each image holds its own index in its first two pixels, so batches can be traced back.
    x = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n) % 256
    x[:, 0, 0, 1] = torch.arange(n) // 256
    return x


def _ids(batch):
    return (batch[:, 0, 0, 0].long() + 256 * batch[:, 0, 0, 1].long()).tolist()


def test_an_epoch_visits_each_image_at_most_once_and_drops_the_incomplete_batch():
    loader = BatchLoader(_images(1000), 128, torch.device("cpu"))
    ids = [i for b in loader.batches(0) for i in _ids(b)]
    assert loader.steps_per_epoch == 7 and len(ids) == 7 * 128 == len(set(ids))


def test_order_depends_only_on_seed_and_epoch_and_can_restart_mid_epoch():
    loader = BatchLoader(_images(1000), 100, torch.device("cpu"), seed=3)
    full = [_ids(b) for b in loader.batches(2)]
    assert [_ids(b) for b in loader.batches(2, start_step=4)] == full[4:]
    assert full != [_ids(b) for b in loader.batches(3)]
    assert torch.equal(epoch_permutation(1000, 3, 2), epoch_permutation(1000, 3, 2))


def test_ranks_take_disjoint_shards_of_one_global_permutation():
    images = _images(1000)
    shards = [BatchLoader(images, 50, torch.device("cpu"), seed=1, rank=r, world_size=2) for r in range(2)]
    single = BatchLoader(images, 100, torch.device("cpu"), seed=1)
    a = [i for b in shards[0].batches(0) for i in _ids(b)]
    b = [i for b in shards[1].batches(0) for i in _ids(b)]
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(i for batch in single.batches(0) for i in _ids(batch))


def test_host_placement_yields_the_same_batches_as_device_placement():
    images = _images(500)
    dev = BatchLoader(images, 64, torch.device("cpu"), placement="device", seed=0)
    host = BatchLoader(images, 64, torch.device("cpu"), placement="host", seed=0)
    host.placement = "host"  # on a CPU-only machine 'device' is chosen; force the prefetch path
    assert [_ids(b) for b in dev.batches(1)] == [_ids(b) for b in host.batches(1)]
