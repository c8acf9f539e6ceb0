"""The generic store: any dtype round trips, writes resume byte for byte, damaged stores are one-line errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from selfsup.data.store import Spec, StoreWriter, open_store, remove_store
from selfsup.errors import DataError

SPEC = Spec(
    dtype="<f4",
    shape=(4, 5),
    fingerprint="source-v1",
    labels=True,
    classes=("a", "b", "c"),
    extras={"stamp": ("<i2", (3,))},
    names=True,
    meta={"kind": "test"},
)


def store_bytes(path) -> dict[str, bytes]:
    """Every file of a store folder, by name."""
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def chunk(start: int, k: int) -> dict:
    """k samples made from inputs start..start+k, every value distinct."""
    rows = np.arange(start, start + k)
    return {
        "samples": (rows[:, None, None] * 100 + np.arange(20).reshape(4, 5)).astype("<f4"),
        "labels": rows % 3,
        "extras": {"stamp": np.stack([rows, -rows, rows * 2], 1).astype("<i2")},
        "names": [f"item-{i}" for i in rows],
    }


def write(path, spec=SPEC, chunks=((0, 4), (4, 3), (7, 5))) -> None:
    writer = StoreWriter(path, spec)
    for start, k in chunks:
        if start < writer.inputs_done:
            continue
        writer.append(**chunk(start, k), inputs=k)
    writer.finish()


def test_samples_labels_extras_and_names_read_back(tmp_path):
    write(tmp_path / "s")
    store = open_store(tmp_path / "s")
    want = chunk(0, 12)
    assert store.samples.dtype == torch.float32 and store.samples.shape == (12, 4, 5)
    assert np.array_equal(store.samples.numpy(), want["samples"])
    assert store.labels.tolist() == want["labels"].tolist() and store.labels.dtype == torch.int64
    assert np.array_equal(store.extras["stamp"].numpy(), want["extras"]["stamp"])
    assert store.names() == want["names"] and store.classes == ["a", "b", "c"]
    assert store.header["fingerprint"] == "source-v1" and store.header["meta"] == {"kind": "test"}
    assert not (tmp_path / "s" / "progress.json").exists()


def test_skipped_inputs_are_counted_apart_from_rows(tmp_path):
    writer = StoreWriter(tmp_path / "s", SPEC)
    writer.append(**chunk(0, 2), inputs=3, skipped=["broken-2"])
    writer.finish()
    store = open_store(tmp_path / "s")
    assert store.count == 2 and store.header["inputs"] == 3 and store.skipped == ["broken-2"]


def test_an_interrupted_write_resumes_at_its_last_chunk_and_ends_byte_identical(tmp_path):
    write(tmp_path / "whole")

    writer = StoreWriter(tmp_path / "cut", SPEC)
    writer.append(**chunk(0, 4), inputs=4)
    writer.append(**chunk(4, 3), inputs=3)
    # A chunk half written when the process died: bytes past the last progress record.
    with open(tmp_path / "cut" / "samples.bin", "ab") as f:
        f.write(b"\x7f" * 123)
    with open(tmp_path / "cut" / "names.jsonl", "ab") as f:
        f.write(b'"item-7"\n"ite')
    del writer

    with pytest.raises(DataError, match="unfinished"):
        open_store(tmp_path / "cut")
    with open(tmp_path / "cut" / "samples.bin", "rb") as old:  # held open: its inode cannot be reused
        resumed = StoreWriter(tmp_path / "cut", SPEC)
        assert resumed.inputs_done == 7 and resumed.rows == 7
        resumed.append(**chunk(7, 5), inputs=5)
        resumed.finish()
        assert os.fstat(old.fileno()).st_ino == (tmp_path / "cut" / "samples.bin").stat().st_ino, "same file"
    assert store_bytes(tmp_path / "cut") == store_bytes(tmp_path / "whole")


def test_a_different_source_fingerprint_starts_the_write_afresh(tmp_path):
    writer = StoreWriter(tmp_path / "s", SPEC)
    writer.append(**chunk(0, 4), inputs=4)
    changed = Spec(**{**SPEC.__dict__, "fingerprint": "source-v2"})
    assert StoreWriter(tmp_path / "s", changed).inputs_done == 0


def test_a_writer_replaces_a_complete_store_and_leaves_foreign_files(tmp_path):
    write(tmp_path / "s")
    (tmp_path / "s" / "notes.txt").write_text("mine")
    StoreWriter(tmp_path / "s", SPEC)
    with pytest.raises(DataError, match="unfinished"):
        open_store(tmp_path / "s")
    remove_store(tmp_path / "s")
    assert [f.name for f in (tmp_path / "s").iterdir()] == ["notes.txt"]


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_a_truncated_samples_file_is_a_one_line_error(tmp_path):
    write(tmp_path / "s")
    with open(tmp_path / "s" / "samples.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError) as e:
        open_store(tmp_path / "s")
    message = one_line(e)
    assert "samples.bin has 100 bytes" in message and "delete" in message and "prepare again" in message


def test_a_truncated_labels_file_is_a_one_line_error(tmp_path):
    write(tmp_path / "s")
    labels = tmp_path / "s" / "labels.npy"
    data = labels.read_bytes()
    labels.write_bytes(data[:-8])
    with pytest.raises(DataError) as e:
        open_store(tmp_path / "s")
    assert "labels.npy" in one_line(e)
    # The right size, damaged content: the size check passes and the .npy header does not parse.
    labels.write_bytes(b"\0" * len(data))
    with pytest.raises(DataError) as e:
        open_store(tmp_path / "s")
    assert "labels.npy unreadable" in one_line(e)


def test_a_corrupt_header_is_a_one_line_error(tmp_path):
    write(tmp_path / "s")
    header = tmp_path / "s" / "header.json"
    good = json.loads(header.read_text())
    header.write_bytes(b"\x00\xff{ not json")
    with pytest.raises(DataError) as e:
        open_store(tmp_path / "s")
    assert "header.json unreadable" in one_line(e)
    header.write_text(json.dumps({**good, "count": "twelve"}))
    with pytest.raises(DataError) as e:
        open_store(tmp_path / "s")
    assert "bad field" in one_line(e)


def test_a_store_from_a_newer_version_is_refused_in_one_line(tmp_path):
    write(tmp_path / "s")
    header = tmp_path / "s" / "header.json"
    header.write_text(json.dumps({**json.loads(header.read_text()), "version": 99, "layout": "from the future"}))
    with pytest.raises(DataError) as e:
        open_store(tmp_path / "s")
    message = one_line(e)
    assert "format version 99" in message and "upgrade selfsup" in message


def test_a_missing_store_or_a_folder_that_is_not_one_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="no store at"):
        open_store(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a complete store"):
        open_store(tmp_path / "plain")
