import ctypes
import sys
import threading

import numpy as np
import pytest
import torch

from selfsup.data import loader as loader_module
from selfsup.data.base import Rows
from selfsup.data.loader import BatchLoader, epoch_permutation, is_mapped
from selfsup.data.store import Spec, StoreWriter, open_store

CPU = torch.device("cpu")


def _images(n):
    # Each image holds its own index in its first two pixels, so batches can be traced back.
    x = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n) % 256
    x[:, 0, 0, 1] = torch.arange(n) // 256
    return x


def _ids(batch):
    batch = batch.samples if isinstance(batch, Rows) else batch
    return (batch[:, 0, 0, 0].long() + 256 * batch[:, 0, 0, 1].long()).tolist()


def test_an_epoch_visits_each_image_at_most_once_and_drops_the_incomplete_batch():
    loader = BatchLoader(_images(1000), 128, CPU)
    ids = [i for b in loader.batches(0) for i in _ids(b)]
    assert loader.steps_per_epoch == 7 and len(ids) == 7 * 128 == len(set(ids))


def test_order_depends_only_on_seed_and_epoch_and_can_restart_mid_epoch():
    loader = BatchLoader(_images(1000), 100, CPU, seed=3)
    full = [_ids(b) for b in loader.batches(2)]
    assert [_ids(b) for b in loader.batches(2, start_step=4)] == full[4:]
    assert full != [_ids(b) for b in loader.batches(3)]
    assert torch.equal(epoch_permutation(1000, 3, 2), epoch_permutation(1000, 3, 2))


def test_ranks_take_disjoint_shards_of_one_global_permutation():
    images = _images(1000)
    shards = [BatchLoader(images, 50, CPU, seed=1, rank=r, world_size=2) for r in range(2)]
    single = BatchLoader(images, 100, CPU, seed=1)
    a = [i for b in shards[0].batches(0) for i in _ids(b)]
    b = [i for b in shards[1].batches(0) for i in _ids(b)]
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(i for batch in single.batches(0) for i in _ids(batch))


def test_host_placement_yields_the_same_batches_as_device_placement():
    images = _images(500)
    dev = BatchLoader(images, 64, CPU, placement="device", seed=0)
    host = BatchLoader(images, 64, CPU, placement="host", seed=0)
    assert (dev.placement, host.placement) == ("device", "host")
    assert [_ids(b) for b in dev.batches(1)] == [_ids(b) for b in host.batches(1)]
    assert [_ids(b) for b in dev.batches(1, start_step=3)] == [_ids(b) for b in host.batches(1, start_step=3)]


def test_extras_travel_with_their_rows_in_every_placement():
    images = _images(300)
    extra = torch.arange(300, dtype=torch.int32).unsqueeze(1).repeat(1, 2) * torch.tensor([1, -1], dtype=torch.int32)
    for placement in ("device", "host"):
        loader = BatchLoader(Rows(images, {"size": extra}), 32, CPU, placement=placement, seed=5)
        for idx, batch in loader.batches(0, with_indices=True):
            assert isinstance(batch, Rows)
            assert batch.extras["size"][:, 0].tolist() == _ids(batch) == idx.tolist()
            assert (batch.extras["size"][:, 1] == -batch.extras["size"][:, 0]).all()


# --- a memory-mapped store -----------------------------------------------------------------------

SHAPE = (3, 64, 64)
ROWS = 2000  # 24 MiB, against batches of 64 rows (0.8 MiB)


def rss_kib() -> dict[str, int]:
    """Resident private and file-backed memory, after handing freed heap memory back to the OS (glibc
    keeps up to tens of MiB of freed blocks for reuse, which would read as growth)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":") for line in f) if k in ("RssAnon", "RssFile")}


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A store whose row i starts with i (as _images does) and is otherwise i's pattern, opened mapped."""
    path = tmp_path_factory.mktemp("loader") / "store"
    writer = StoreWriter(path, Spec(dtype="|u1", shape=SHAPE, fingerprint="rows", extras={"id": ("<i4", (1,))}))
    for start in range(0, ROWS, 1000):
        rows = np.arange(start, start + 1000)
        x = np.broadcast_to((rows % 251).astype(np.uint8)[:, None, None, None], (1000, *SHAPE)).copy()
        x[:, 0, 0, 0], x[:, 0, 0, 1] = rows % 256, rows // 256
        writer.append(x, inputs=1000, extras={"id": rows[:, None].astype(np.int32)})
    writer.finish()
    return open_store(path)


def test_a_mapped_store_is_read_from_the_map_on_the_cpu_and_gives_the_batches_of_memory(mapped):
    assert is_mapped(mapped.samples) and not is_mapped(mapped.samples.clone())
    from_map = BatchLoader(Rows(mapped.samples, mapped.extras), 64, CPU, seed=2)
    in_memory = BatchLoader(Rows(mapped.samples.clone(), mapped.extras), 64, CPU, seed=2)
    assert (from_map.placement, in_memory.placement) == ("host", "device")
    for a, b in zip(from_map.batches(1, start_step=5), in_memory.batches(1, start_step=5), strict=True):
        assert torch.equal(a.samples, b.samples) and torch.equal(a.extras["id"], b.extras["id"])
        assert a.extras["id"][:, 0].tolist() == _ids(a)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_the_loader_never_materialises_a_mapped_store(mapped):
    store_kib = ROWS * int(np.prod(SHAPE)) // 1024
    loader = BatchLoader(mapped.samples, 64, CPU, seed=0)
    before = rss_kib()
    seen = sum(len(b) for b in loader.batches(0))
    grew = rss_kib()["RssAnon"] - before["RssAnon"]
    assert seen == 31 * 64
    assert grew < store_kib // 4, f"an epoch from the map grew private memory by {grew} KiB (store: {store_kib})"
    # The check can fail: device placement on the CPU reads the store into this process's memory.
    before = rss_kib()
    resident = BatchLoader(mapped.samples, 64, CPU, placement="device")
    assert rss_kib()["RssAnon"] - before["RssAnon"] > store_kib * 3 // 4
    del resident


def test_device_placement_of_a_mapped_store_too_large_for_memory_reads_from_the_map(mapped, monkeypatch):
    monkeypatch.setattr(loader_module, "available_memory", lambda: 4 * mapped.samples.numel() - 1)
    with pytest.warns(UserWarning, match="more than 1/4 of the available memory"):
        loader = BatchLoader(mapped.samples, 64, CPU, placement="device")
    assert loader.placement == "host" and is_mapped(loader.samples)
    monkeypatch.setattr(loader_module, "available_memory", lambda: 4 * mapped.samples.numel() + 4)
    assert BatchLoader(mapped.samples, 64, CPU, placement="device").placement == "device"


def test_an_error_while_gathering_ahead_is_raised_in_the_training_thread(mapped, monkeypatch):
    loader = BatchLoader(mapped.samples, 64, CPU, placement="host")
    gather = BatchLoader._gather

    def failing(self, rows, pin=False):
        if len(self._seen) == 3:
            raise OSError("Input/output error reading the store")
        self._seen.append(rows)
        return gather(self, rows, pin)

    loader._seen = []
    monkeypatch.setattr(BatchLoader, "_gather", failing)
    got = []
    with pytest.raises(OSError, match="Input/output error"):
        for batch in loader.batches(0):
            got.append(batch)
    assert len(got) == 3


def test_stopping_early_ends_the_gathering_thread(mapped):
    loader = BatchLoader(mapped.samples, 64, CPU, placement="host")
    batches = loader.batches(0)
    next(batches)
    assert any(t.name == "selfsup-batch-prefetch" for t in threading.enumerate())
    batches.close()  # what leaving the loop early (an interruption, an error) does to the generator
    assert not any(t.name == "selfsup-batch-prefetch" for t in threading.enumerate())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_host_placement_copies_pinned_batches_that_match_device_placement(mapped):
    gpu = torch.device("cuda")
    rows = Rows(mapped.samples, mapped.extras)
    host = BatchLoader(rows, 64, gpu, placement="host", seed=4)
    device = BatchLoader(rows, 64, gpu, placement="device", seed=4)
    for (i, a), (j, b) in zip(
        host.batches(2, 3, with_indices=True), device.batches(2, 3, with_indices=True), strict=True
    ):
        assert a.samples.is_cuda and a.extras["id"].is_cuda and torch.equal(i, j)
        assert torch.equal(a.samples, b.samples) and torch.equal(a.extras["id"], b.extras["id"])
