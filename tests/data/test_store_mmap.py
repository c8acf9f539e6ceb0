"""The samples tensor is a private map of the file: indexing a batch reads that batch, not the store."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from selfsup.data.store import Spec, StoreWriter, open_store

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self")

ROWS, SHAPE = 1500, (3, 128, 128)  # 72 MiB, far above a 64-row batch (3 MiB)
BATCH = 64


def row_values(rows: np.ndarray) -> np.ndarray:
    """Row i's pixels: a pattern that differs per row, cheap to make again."""
    flat = np.arange(int(np.prod(SHAPE)), dtype=np.int64)
    return ((flat[None] + rows[:, None] * 13) % 251).astype(np.uint8).reshape(len(rows), *SHAPE)


def rss_kib() -> dict[str, int]:
    """Resident memory of this process: private (RssAnon) and mapped from files (RssFile)."""
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":") for line in f) if k in ("RssAnon", "RssFile")}


def grown(before: dict[str, int]) -> dict[str, int]:
    after = rss_kib()
    return {k: after[k] - before[k] for k in after}


def mapping_of(address: int) -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            span, *_, name = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in span.split("-"))
            if start <= address < end:
                return name.strip()
    return ""


@pytest.fixture
def store_path(tmp_path):
    writer = StoreWriter(tmp_path / "s", Spec(dtype="|u1", shape=SHAPE, fingerprint="pattern"))
    for start in range(0, ROWS, 500):
        writer.append(row_values(np.arange(start, start + 500)), inputs=500)
    writer.finish()
    # Start cold, as a store does after a reboot: pages the writer left in the page cache are
    # mapped in large folios on a read fault (2 MiB on ext4 with kernel 6.18), which would make a
    # few rows look like most of this small file.
    fd = os.open(tmp_path / "s" / "samples.bin", os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    return tmp_path / "s"


def test_indexing_a_batch_reads_those_rows_without_materialising_the_store(store_path):
    store_kib = ROWS * int(np.prod(SHAPE)) // 1024
    batch_kib = BATCH * int(np.prod(SHAPE)) // 1024
    samples = open_store(store_path).samples
    assert samples.shape == (ROWS, *SHAPE)
    assert mapping_of(samples.data_ptr()) == str(store_path / "samples.bin"), "file-backed, not a copy"

    rows = torch.randperm(ROWS, generator=torch.Generator().manual_seed(0))[:BATCH]
    before = rss_kib()
    batch = samples[rows]
    grew = grown(before)
    assert np.array_equal(batch.numpy(), row_values(rows.numpy()))
    assert grew["RssAnon"] < batch_kib + 2048, f"private memory grew {grew['RssAnon']} KiB for a {batch_kib} KiB batch"
    assert grew["RssFile"] < store_kib // 4, f"a {BATCH}-row batch paged in {grew['RssFile']} of {store_kib} KiB"

    # The measurements can fail: reading every row maps the whole file in, and a copy is private memory.
    before = rss_kib()
    assert int(samples.sum(dtype=torch.int64)) > 0
    assert grown(before)["RssFile"] > store_kib * 3 // 4
    before = rss_kib()
    copy = samples.clone()
    assert grown(before)["RssAnon"] > store_kib * 3 // 4
    del copy


def test_writing_into_the_samples_changes_this_process_only_never_the_file(tmp_path):
    writer = StoreWriter(tmp_path / "small", Spec(dtype="|u1", shape=(3, 8, 8), fingerprint="pattern"))
    writer.append(np.arange(4 * 192, dtype=np.uint8).reshape(4, 3, 8, 8), inputs=4)
    writer.finish()
    path = tmp_path / "small" / "samples.bin"
    samples = open_store(tmp_path / "small").samples
    before = path.read_bytes()
    samples[1] = 7  # copy-on-write: this process's page changes, not the file, and no segmentation fault
    assert samples[1].eq(7).all() and samples[0].flatten().tolist() == list(range(192))
    assert path.read_bytes() == before
    assert open_store(tmp_path / "small").samples.numpy().tobytes() == before
