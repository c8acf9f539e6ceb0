"""selfsup.data against real files: the bundled digits, the Debian Fashion-MNIST copy, and files made here."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data import Dataset, describe_sources, load_dataset, source_kinds
from selfsup.errors import DataError, UsageError
from selfsup.modalities.image.sources import fashion
from selfsup.modalities.image.sources.idx import read_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def fashion_dir() -> Path:
    if not FASHION_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{FASHION_DIR} is missing under CI: apt-get install dataset-fashion-mnist")
        pytest.skip(f"{FASHION_DIR} is missing (apt-get install dataset-fashion-mnist)")
    return FASHION_DIR


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Keep downloads and decoded-folder caches out of the real ~/.cache."""
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SELFSUP_DATA", raising=False)


# --- digits ----------------------------------------------------------------------------------------


def test_digits_shapes_and_split():
    d = load_dataset("digits")
    assert d.train.shape == (1437, 1, 8, 8) and d.test.shape == (360, 1, 8, 8)
    assert d.train.dtype == torch.uint8 and d.train.is_contiguous()
    assert int(d.train.max()) == 255 and int(d.test.max()) == 255
    assert d.train_labels.dtype == torch.int64 and set(d.train_labels.tolist()) == set(range(10))
    assert d.classes == [str(i) for i in range(10)] and d.num_classes == 10
    assert d.sample_shape == (1, 8, 8) and d.modality == "image" and d.task == "classification"
    again = load_dataset("digits")
    assert torch.equal(d.train, again.train) and torch.equal(d.test_labels, again.test_labels)
    rows = {tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(d.train, d.train_labels)}
    assert not any(tuple(x.flatten().tolist()) + (int(y),) in rows for x, y in zip(d.test, d.test_labels))


def test_unknown_spec_suggests_closest():
    with pytest.raises(UsageError, match="unknown dataset 'fashon'; choose one of: fashion-mnist"):
        load_dataset("fashon")
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("csv:/x.csv")
    with pytest.raises(DataError, match="lacks a path"):
        load_dataset("npy:")


# --- fashion-mnist ---------------------------------------------------------------------------------


def test_fashion_mnist_real_files(fashion_dir):
    d = load_dataset("fashion-mnist", data_dir=str(fashion_dir))
    assert d.train.shape == (60000, 1, 28, 28) and d.test.shape == (10000, 1, 28, 28)
    assert d.train.dtype == torch.uint8 and d.train.is_contiguous() and d.test.is_contiguous()
    assert torch.bincount(d.train_labels).tolist() == [6000] * 10
    assert d.test_labels.min() == 0 and d.test_labels.max() == 9
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"
    assert int(d.train[0].sum()) == 76247 and int(d.train_labels[0]) == 9
    assert int(d.train.sum(dtype=torch.int64)) == 3431114169
    assert int(d.test.sum(dtype=torch.int64)) == 573469082
    assert d.location == str(fashion_dir)
    assert load_dataset("fashion_mnist", data_dir=str(fashion_dir)) is d  # cached in-process


def test_fashion_found_without_data_dir(fashion_dir):
    assert load_dataset("fashion-mnist").location == str(fashion_dir)


def test_read_idx_real_labels(fashion_dir):
    labels = read_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8


def _payload(fashion_dir: Path, name: str) -> bytes:
    return gzip.decompress((fashion_dir / name).read_bytes())


def test_idx_wrong_magic(fashion_dir, tmp_path):
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + _payload(fashion_dir, bad.name)[4:]))
    with pytest.raises(DataError, match=f"{bad.name}.*not an IDX file.*0x00000801"):
        read_idx(bad)
    # A well-formed IDX file of the wrong kind: labels where images are expected.
    shutil.copy(fashion_dir / bad.name, bad)
    with pytest.raises(DataError, match=f"{bad.name} has IDX magic 0x00000801, expected 0x00000803"):
        read_idx(bad, magic=0x803)


def test_idx_truncated_gzip(fashion_dir, tmp_path):
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes((fashion_dir / bad.name).read_bytes()[:3000])
    with pytest.raises(DataError, match=f"{bad.name} is a truncated or corrupt gzip file"):
        read_idx(bad)


def test_idx_short_and_long_payload(fashion_dir, tmp_path):
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    payload = _payload(fashion_dir, bad.name)
    bad.write_bytes(gzip.compress(payload[:-100]))
    with pytest.raises(DataError, match=f"{bad.name} is truncated"):
        read_idx(bad)
    bad.write_bytes(gzip.compress(payload + b"\0"))
    with pytest.raises(DataError, match=f"{bad.name} is followed by extra bytes"):
        read_idx(bad)


def test_idx_plain_and_wider_types(tmp_path):
    path = tmp_path / "floats.idx"
    values = np.arange(6, dtype=">f4").reshape(2, 3)
    path.write_bytes(b"\0\0\x0d\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + values.tobytes())
    array = read_idx(path)
    assert array.dtype == np.float32 and array.tolist() == values.tolist()


def test_fashion_data_dir_missing_files(fashion_dir, tmp_path):
    shutil.copy(fashion_dir / "t10k-labels-idx1-ubyte.gz", tmp_path)
    with pytest.raises(DataError, match=f"data dir {tmp_path} lacks .*train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


def test_fashion_corrupt_local_file_names_it(fashion_dir, tmp_path):
    for name in fashion.FILES:
        shutil.copy(fashion_dir / name, tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(_payload(fashion_dir, labels.name))
    payload[100] = (payload[100] + 1) % 10  # still a valid IDX file, but not the official one
    labels.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(DataError, match=f"{labels}.*SHA-256"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


def test_fashion_no_copy_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", download=False)
    message = str(err.value)
    assert "--data-dir" in message and "SELFSUP_DATA" in message and "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path / "cache" / "fashion-mnist") in message and "\n" not in message


@pytest.mark.slow
def test_fashion_download_verifies_and_falls_back(fashion_dir, tmp_path, monkeypatch):
    """Downloads from a local HTTP server: the first mirror fails or serves a corrupt copy, the second works."""
    (tmp_path / "bad").mkdir()  # holds one corrupt file; the others are missing there (HTTP 404)
    labels = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "bad" / labels).write_bytes(gzip.compress(_payload(fashion_dir, labels)[:-1] + b"\x01"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/")
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(fashion, "MIRRORS", (f"{base}{tmp_path}/bad/", f"{base}{fashion_dir}/"))
    monkeypatch.setattr(fashion, "SYSTEM_DIR", tmp_path / "absent")
    try:
        d = load_dataset("fashion-mnist")
    finally:
        server.shutdown()
    target = tmp_path / "cache" / "fashion-mnist"
    assert d.location == str(target) and sorted(p.name for p in target.iterdir()) == sorted(fashion.FILES)
    assert int(d.train.sum(dtype=torch.int64)) == 3431114169 and int(d.test_labels[-1]) == 5  # not the corrupt 1


def test_fashion_selfsup_data_env(fashion_dir, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fashion-mnist").symlink_to(fashion_dir)
    monkeypatch.setenv("SELFSUP_DATA", str(tmp_path / "data"))
    assert fashion.find() == tmp_path / "data" / "fashion-mnist"  # searched before the Debian folder


def test_describe_sources(fashion_dir):
    entries = describe_sources()
    names = [e["name"] for e in entries]
    assert set(source_kinds()) <= set(names)  # a modality may also list its named archives one by one
    assert names[:2] == ["digits", "fashion-mnist"]
    assert all(set(e) == {"name", "available", "location", "note"} for e in entries)
    by_name = {e["name"]: e for e in entries}
    assert by_name["fashion-mnist"]["available"] and by_name["fashion-mnist"]["location"] == str(fashion_dir)
    assert by_name["digits"]["available"]


def test_describe_sources_without_fashion(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "SYSTEM_DIR", tmp_path / "absent")
    entry = describe_sources()[1]
    assert not entry["available"] and entry["location"] == str(tmp_path / "cache" / "fashion-mnist")
    assert not describe_sources(str(tmp_path))[1]["available"]


# --- folder ------------------------------------------------------------------------------------------


def _png(path: Path, value: int, size=(6, 4), mode="L") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, color).save(path)


def test_folder_train_test_with_classes(tmp_path):
    for split, count in (("train", 3), ("val", 2)):
        for cls, value in (("cat", 10), ("dog", 200)):
            for i in range(count):
                _png(tmp_path / "ds" / split / cls / f"{i}.PNG", value)
    d = load_dataset(f"folder:{tmp_path / 'ds'}")  # prepared at S = 48, for the default 32-px views
    assert d.train.shape == (6, 1, 48, 48) and d.test.shape == (4, 1, 48, 48) and d.train.dtype == torch.uint8
    assert d.classes == ["cat", "dog"] and d.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert d.test_labels.tolist() == [0, 0, 1, 1] and d.skipped == 0
    assert int(d.train[0].max()) == 10 and int(d.train[5].min()) == 200
    assert d.name == f"folder:{tmp_path / 'ds'}" and d.meta["storage_size"] == 48
    assert d.extras["train"]["source_size"].tolist() == [[4, 6]] * 6 and len(d.extras["test"]["source_size"]) == 4
    assert d.train.is_shared(), "the store's memory map, not a copy"


def test_folder_loose_rgb_of_several_sizes_each_filling_the_slot(tmp_path):
    _png(tmp_path / "ds" / "a.png", 50, mode="RGB")
    _png(tmp_path / "ds" / "b.jpg", 60)
    _png(tmp_path / "ds" / "c.bmp", 70, size=(12, 8))
    _png(tmp_path / "ds" / ".hidden.png", 0)
    (tmp_path / "ds" / "notes.txt").write_text("not an image")
    d = load_dataset(f"folder:{tmp_path / 'ds'}", options={"size": 16})
    assert d.train.shape == (3, 3, 16, 16) and d.test is None
    assert d.extras["train"]["source_size"].tolist() == [[4, 6], [4, 6], [8, 12]]
    assert d.train[2].eq(70).all(), "a uniform image stays uniform over its whole slot"
    assert d.train_labels is None and d.classes is None and d.num_classes is None


def test_folder_corrupt_image(tmp_path):
    _png(tmp_path / "ds" / "cls" / "good.png", 1)
    _png(tmp_path / "ds" / "cls" / "good2.png", 2)
    (tmp_path / "ds" / "cls" / "x.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match=r"x\.png.*--skip-bad"):
        load_dataset(f"folder:{tmp_path / 'ds'}")
    with pytest.warns(UserWarning, match="skipped 1 unreadable images"):
        d = load_dataset(f"folder:{tmp_path / 'ds'}", skip_bad=True)
    assert d.skipped == 1 and len(d.train) == 2 and d.train_labels.tolist() == [0, 0]
    with pytest.raises(DataError, match=r"x\.png"):  # the store remembers the bad file
        load_dataset(f"folder:{tmp_path / 'ds'}")


def test_folder_empty_and_missing(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_folder_mixed_loose_and_classes(tmp_path):
    _png(tmp_path / "ds" / "loose.png", 1)
    _png(tmp_path / "ds" / "cls" / "a.png", 2)
    with pytest.raises(DataError, match="mixes 1 loose images with class subfolders"):
        load_dataset(f"folder:{tmp_path / 'ds'}")


def test_folder_options_are_checked_and_the_old_decoded_caches_are_pointed_out(tmp_path):
    for i in range(3):
        _png(tmp_path / "ds" / "k" / f"{i}.png", 30 * i)
    with pytest.raises(UsageError, match="folder data has no option 'sise'; its options .*: size, workers, store"):
        load_dataset(f"folder:{tmp_path / 'ds'}", options={"sise": 32})
    with pytest.raises(UsageError, match="positive number of pixels"):
        load_dataset(f"folder:{tmp_path / 'ds'}", options={"size": "big"})
    old = tmp_path / "cache" / "folders"
    old.mkdir(parents=True)
    (old / "0123abcd.pt").write_bytes(b"\0" * 2**20)
    with pytest.warns(UserWarning, match=r"holds 1 decoded-image caches of an earlier selfsup \(1 MiB\) that nothing"):
        load_dataset(f"folder:{tmp_path / 'ds'}", options={"size": 8})
    encoder_spec = {"size": 64, "channels": 3}  # eval and embed: the store for the encoder's 64-px views
    assert load_dataset(f"folder:{tmp_path / 'ds'}", input_spec=encoder_spec).train.shape[-1] == 96


# --- npy / npz ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, channels", [((5, 7, 9), 1), ((5, 7, 9, 3), 3), ((5, 3, 7, 9), 3), ((5, 7, 9, 1), 1), ((5, 1, 7, 9), 1)]
)
def test_npy_layouts(tmp_path, shape, channels):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    d = load_dataset(f"npy:{tmp_path / 'x.npy'}")
    assert d.train.shape == (5, channels, 7, 9) and d.train.is_shared(), "a view of the file, not a copy"
    expected = array.reshape(5, 7, 9, -1).transpose(0, 3, 1, 2) if shape[-1] in (1, 3) else array.reshape(5, -1, 7, 9)
    assert np.array_equal(d.train.numpy(), expected)
    assert d.train_labels is None and d.test is None


def test_npy_float_scaling_and_labels(tmp_path):
    np.save(tmp_path / "unit.npy", np.array([[[0.0, 0.5, 1.0]]] * 2))
    assert load_dataset(f"npy:{tmp_path / 'unit.npy'}").train[0, 0, 0].tolist() == [0, 128, 255]
    np.save(tmp_path / "wide.npy", np.array([[[0.0, 127.6, 300.0]]] * 2, dtype=np.float32))
    assert load_dataset(f"npy:{tmp_path / 'wide.npy'}").train[0, 0, 0].tolist() == [0, 128, 255]
    np.save(tmp_path / "wide_labels.npy", np.array([7, 3]))
    d = load_dataset(f"npy:{tmp_path / 'wide.npy'}")
    assert d.train_labels.tolist() == [1, 0] and d.classes == ["3", "7"] and d.num_classes == 2
    np.save(tmp_path / "nan.npy", np.array([[[0.0, np.nan]]]))
    with pytest.raises(DataError, match="NaN"):
        load_dataset(f"npy:{tmp_path / 'nan.npy'}")


def test_npy_bad_inputs(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(DataError, match=r"flat\.npy has shape \(4, 4\); images must be \(N, H, W\)"):
        load_dataset(f"npy:{tmp_path / 'flat.npy'}")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"junk\.npy"):
        load_dataset(f"npy:{tmp_path / 'junk.npy'}")
    with pytest.raises(DataError, match=r"missing\.npy does not exist"):
        load_dataset(f"npy:{tmp_path / 'missing.npy'}")
    np.save(tmp_path / "imgs.npy", np.zeros((3, 4, 4), np.uint8))
    np.save(tmp_path / "imgs_labels.npy", np.zeros(2, np.int64))
    with pytest.raises(DataError, match="2 labels for 3 images"):
        load_dataset(f"npy:{tmp_path / 'imgs.npy'}")


def test_npz_keys_and_labels(tmp_path):
    rng = np.random.default_rng(1)
    x_train, x_test = (
        rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
        rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8),
    )
    np.savez(
        tmp_path / "a.npz",
        x_train=x_train,
        y_train=np.array([5, 5, 9, 9, 5, 9]),
        x_test=x_test,
        y_test=np.array([9, 5]),
    )
    d = load_dataset(f"npz:{tmp_path / 'a.npz'}")
    assert d.train.shape == (6, 3, 8, 8) and d.test.shape == (2, 3, 8, 8)
    assert (
        d.train_labels.tolist() == [0, 0, 1, 1, 0, 1] and d.test_labels.tolist() == [1, 0] and d.classes == ["5", "9"]
    )
    np.savez_compressed(tmp_path / "b.npz", train_images=x_train, train_labels=np.arange(6), test_images=x_test)
    d = load_dataset(f"npz:{tmp_path / 'b.npz'}")
    assert d.test_labels is None and d.num_classes == 6
    np.savez(tmp_path / "c.npz", images=x_train.astype(np.float32) / 255)
    d = load_dataset(f"npz:{tmp_path / 'c.npz'}")
    assert np.array_equal(d.train.numpy(), x_train.transpose(0, 3, 1, 2)) and d.test is None


def test_npz_bad_inputs(tmp_path):
    np.savez(tmp_path / "keys.npz", pixels=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match=r"keys\.npz has arrays \['pixels'\]; expected x_train"):
        load_dataset(f"npz:{tmp_path / 'keys.npz'}")
    np.savez(tmp_path / "floatlab.npz", images=np.zeros((2, 4, 4)), labels=np.array([0.0, 1.0]))
    with pytest.raises(DataError, match=r"floatlab\.npz\[labels\] must be a 1-D integer array"):
        load_dataset(f"npz:{tmp_path / 'floatlab.npz'}")
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((2, 4, 4, 5)))
    with pytest.raises(DataError, match=r"shape\.npz\[x_train\] has shape \(2, 4, 4, 5\)"):
        load_dataset(f"npz:{tmp_path / 'shape.npz'}")
    np.savez(tmp_path / "good.npz", images=np.zeros((2, 4, 4)))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:100])
    with pytest.raises(DataError, match=r"cut\.npz"):
        load_dataset(f"npz:{tmp_path / 'cut.npz'}")
    np.save(tmp_path / "single.npy", np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="use npy:"):
        load_dataset(f"npz:{tmp_path / 'single.npy'}")


def test_dataset_takes_any_sample_shape_but_one_per_dataset():
    rows = Dataset(
        "x", torch.zeros(4, 6), torch.tensor([0.5, 1.0, 2.0, 3.0]), None, None, None, "here", modality="table"
    )
    assert rows.task == "regression" and rows.num_classes is None and rows.sample_shape == (6,)
    with pytest.raises(ValueError, match="test split is torch.float32 \\(5,\\)"):
        Dataset("x", torch.zeros(2, 6), None, torch.zeros(2, 5), None, None, "here")
    with pytest.raises(ValueError, match="test split is torch.uint8"):
        Dataset("x", torch.zeros(2, 1, 4, 4), None, torch.zeros(2, 1, 4, 4, dtype=torch.uint8), None, None, "here")
    with pytest.raises(ValueError, match="labels must be"):
        Dataset("x", torch.zeros(2, 6), torch.zeros(3, dtype=torch.int64), None, None, None, "here")
