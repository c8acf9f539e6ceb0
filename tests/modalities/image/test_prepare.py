"""prepare_folder on real JPEG and PNG files: what the store holds, when it is rebuilt, broken files."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from imagefiles import Image, make_folder, store_bytes, write_image

from selfsup.data import store as store_module
from selfsup.data.store import open_store
from selfsup.errors import DataError, UsageError
from selfsup.modalities.image.prepare import default_storage_size, default_store_dir, prepare_folder

S = 48


def reference(path, size: int, mode: str = "RGB") -> np.ndarray:
    """What Pillow decodes, in full, resized to fill size x size (bicubic) and turned upright, as (C, S, S)."""
    with Image.open(path) as im:
        turn = im.getexif().get(0x0112, 1)
        im = im.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
        if turn == 6:
            im = im.transpose(Image.Transpose.ROTATE_270)
        pixels = np.asarray(im)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def test_the_store_holds_what_pillow_decodes_resized_to_fill_the_slot_with_labels_names_and_sizes(photos, tmp_path):
    stores = prepare_folder(photos, S, workers=2, out=tmp_path / "store", progress=False)
    assert set(stores) == {"train", "test"}  # val/ is the test split
    train = stores["train"]
    assert train.samples.shape == (12, 3, S, S) and train.samples.dtype == torch.uint8
    assert train.classes == ["cat", "dog"] and set(train.extras) == {"source_size"}
    names = train.names()
    assert names[0] == "train/cat/img000.jpg" and len(names) == 12
    assert train.labels.tolist() == [0] * 6 + [1] * 6
    jpeg_error = []
    for row, name in enumerate(names):
        want = reference(photos / name, S)
        with Image.open(photos / name) as im:
            width, height = im.size
        assert train.extras["source_size"][row].tolist() == [height, width]
        got = train.samples[row].numpy()
        if name.endswith(".png") or max(width, height) < 2 * S:
            assert np.array_equal(got, want), name  # no draft: exactly Pillow's decode and resize
        else:
            error = np.abs(got.astype(int) - want.astype(int))
            jpeg_error.append((error.mean(), error.max()))
    # JPEGs decode at a reduced DCT scale first (draft): close to the full decode, not equal.
    assert len(jpeg_error) == 8, jpeg_error
    assert max(mean for mean, _ in jpeg_error) < 2.0 and max(worst for _, worst in jpeg_error) < 16, jpeg_error
    assert stores["test"].samples.shape == (4, 3, S, S) and stores["test"].labels.tolist() == [0, 0, 1, 1]


def test_an_image_smaller_than_the_slot_is_enlarged_to_fill_it_and_keeps_its_size(photos, tmp_path):
    train = prepare_folder(photos, S, workers=0, out=tmp_path / "store", progress=False)["train"]
    row = train.names().index("train/cat/img003.jpg")  # 40 x 28, inside 48 x 48
    assert train.extras["source_size"][row].tolist() == [28, 40]
    assert train.samples[row, :, -1].float().mean() > 10, "the slot's last row holds the image, not padding"


def test_the_default_storage_size_is_one_and_a_half_views_in_multiples_of_eight():
    assert [default_storage_size(v) for v in (8, 32, 64, 96, 224)] == [16, 48, 96, 144, 336]


def test_grey_and_colour_files_mixed_give_rgb_with_grey_replicated(tmp_path):
    root = tmp_path / "mixed"
    write_image(root / "grey.png", 60, 40, 1, grey=True)
    write_image(root / "grey.jpg", 60, 40, 2, grey=True)
    write_image(root / "colour.jpg", 60, 40, 3)
    Image.fromarray(np.full((20, 30, 4), 200, np.uint8), "RGBA").save(root / "rgba.png")
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).convert("P").save(root / "palette.gif")
    Image.fromarray(np.full((20, 30, 4), 50, np.uint8), "CMYK").save(root / "cmyk.jpg")
    store = prepare_folder(root, S, workers=0, out=tmp_path / "store", progress=False)["train"]
    assert store.samples.shape[1] == 3 and store.labels is None  # loose images: unlabelled
    names = store.names()
    for name in ("grey.png", "grey.jpg"):
        pixels = store.samples[names.index(name)]
        assert pixels.float().std() > 5 and (pixels[0] == pixels[1]).all() and (pixels[1] == pixels[2]).all()
        assert np.array_equal(pixels[0].numpy(), reference(root / name, S, "L")[0])
    colour = store.samples[names.index("colour.jpg")].float()
    assert (colour[0] - colour[1]).abs().mean() > 5
    assert store.samples[names.index("rgba.png")].eq(200).all()


def test_a_folder_of_grey_files_gives_one_channel(tmp_path):
    root = tmp_path / "grey"
    for i in range(3):
        write_image(root / f"g{i}.png", 50 + 10 * i, 40, i, grey=True)
    Image.fromarray(np.full((30, 30), 65535, np.uint16)).save(root / "deep.png")  # 16-bit grey
    store = prepare_folder(root, S, workers=0, out=tmp_path / "store", progress=False)["train"]
    assert store.samples.shape == (4, 1, S, S)
    deep = store.samples[store.names().index("deep.png")]
    assert deep.eq(255).all(), "16-bit white is 8-bit white, scaled, not clipped"


def test_exif_orientation_is_applied(tmp_path):
    root = tmp_path / "turned"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (a phone held upright)
    write_image(root / "phone.jpg", 120, 80, 7, exif=exif.tobytes())
    write_image(root / "plain.jpg", 120, 80, 8)
    store = prepare_folder(root, S, workers=0, out=tmp_path / "store", progress=False)["train"]
    names = store.names()
    assert store.extras["source_size"][names.index("phone.jpg")].tolist() == [120, 80]
    assert store.extras["source_size"][names.index("plain.jpg")].tolist() == [80, 120]
    got = store.samples[names.index("phone.jpg")].numpy().astype(int)
    assert np.abs(got - reference(root / "phone.jpg", S).astype(int)).mean() < 3.0
    unturned = store.samples[names.index("plain.jpg")].numpy().astype(int)
    assert np.abs(got - unturned.transpose(0, 2, 1)[:, :, ::-1]).mean() > 10, "the turn is not a no-op"


def test_an_unchanged_folder_reuses_its_store_and_changed_files_invalidate_it(photos, tmp_path):
    out = tmp_path / "store"
    first = prepare_folder(photos, S, workers=0, out=out, progress=False)["train"]
    samples = out / "train" / "samples.bin"
    written = samples.stat()
    with open(samples, "rb"):  # held open: a rewrite's new file could not reuse its inode
        again = prepare_folder(photos, S, workers=0, out=out, progress=False)["train"]
        now = samples.stat()
    assert (now.st_ino, now.st_mtime_ns) == (written.st_ino, written.st_mtime_ns), "not written again"
    assert again.header == first.header
    before = first.samples.clone()

    replaced = photos / "train" / "dog" / "img001.jpg"
    write_image(replaced, 150, 200, 999)  # new content under the same name
    changed = prepare_folder(photos, S, workers=0, out=out, progress=False)["train"]
    assert changed.fingerprint != first.fingerprint and changed.count == 12
    row = changed.names().index("train/dog/img001.jpg")
    assert not changed.samples[row].equal(before[row])
    others = [i for i in range(12) if i != row]
    assert changed.samples[others].equal(before[others])

    write_image(photos / "train" / "dog" / "img100.png", 60, 60, 1000)
    added = prepare_folder(photos, S, workers=0, out=out, progress=False)["train"]
    assert added.fingerprint != changed.fingerprint and added.count == 13
    assert added.names()[-1] == "train/dog/img100.png"


def test_a_corrupt_jpeg_is_named_or_skipped_and_counted(photos, tmp_path):
    bad = photos / "train" / "dog" / "img004.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # a truncated download: the header opens, the pixels do not
    junk = photos / "train" / "cat" / "notes.jpg"
    junk.write_bytes(b"not an image at all")  # does not even open
    out = tmp_path / "store"

    with pytest.raises(DataError) as e:
        prepare_folder(photos, S, workers=0, out=out, progress=False)
    assert str(junk) in str(e.value) and "--skip-bad" in str(e.value) and "\n" not in str(e.value)

    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        stores = prepare_folder(photos, S, workers=0, out=out, progress=False, skip_bad=True)
    train = stores["train"]
    assert train.count == 11 and train.header["inputs"] == 13
    assert train.header["skipped"] == {"count": 2, "names": ["train/cat/notes.jpg", "train/dog/img004.jpg"]}
    assert "train/dog/img004.jpg" not in train.names()

    # The store keeps the record: without skip_bad it is refused again, naming a file, in one line.
    with pytest.raises(DataError) as e:
        prepare_folder(photos, S, workers=0, out=out, progress=False)
    assert "notes.jpg" in str(e.value) and "(and 1 more)" in str(e.value) and "\n" not in str(e.value)


def test_a_file_that_fails_only_when_decoded_is_named(tmp_path):
    root = tmp_path / "one-bad"
    write_image(root / "good.jpg", 100, 80, 1)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((80, 100, 3), np.uint8) + 7).save(buf, "JPEG")
    (root / "cut.jpg").write_bytes(buf.getvalue()[:300])
    with pytest.raises(DataError, match=r"cannot decode image .*cut\.jpg"):
        prepare_folder(root, S, workers=0, out=tmp_path / "store", progress=False)


def test_bad_options_and_missing_folders_are_one_line_errors(photos, tmp_path):
    with pytest.raises(UsageError, match="storage size"):
        prepare_folder(photos, 0, progress=False)
    with pytest.raises(UsageError, match="workers"):
        prepare_folder(photos, S, workers=-1, progress=False)
    with pytest.raises(DataError, match="does not exist"):
        prepare_folder(tmp_path / "nowhere", S, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        prepare_folder(empty, S, progress=False)


def test_the_default_store_folder_is_under_the_cache_and_keyed_by_path_and_size(tmp_path):
    a = make_folder(tmp_path / "a" / "photos", per_class=1)
    b = make_folder(tmp_path / "b" / "photos", per_class=1)
    assert default_store_dir(a, 48) != default_store_dir(b, 48) != default_store_dir(a, 64)
    assert str(default_store_dir(a, 48)).startswith(os.environ["SELFSUP_CACHE"])
    store = prepare_folder(a, S, workers=0, progress=False)["train"]
    assert store.path == default_store_dir(a, 48) / "train"
    assert open_store(store.path).count == 2


def test_a_prepare_interrupted_between_chunks_continues_to_an_identical_store(photos, tmp_path, monkeypatch):
    prepare_folder(photos, S, workers=0, out=tmp_path / "whole", progress=False, chunk_rows=2)
    durable = store_module.StoreWriter.append
    calls = []

    def append_then_ctrl_c(self, *args, **kwargs):  # the real append; then Ctrl-C arrives
        durable(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(store_module.StoreWriter, "append", append_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        prepare_folder(photos, S, workers=0, out=tmp_path / "cut", progress=False, chunk_rows=2)
    monkeypatch.undo()
    train = tmp_path / "cut" / "train"
    assert not (train / "header.json").exists()
    assert json.loads((train / "progress.json").read_text())["inputs"] == 6, "three chunks of two are durable"
    with open(train / "samples.bin", "rb") as old:  # held open: a fresh file could not reuse its inode
        prepare_folder(photos, S, workers=0, out=tmp_path / "cut", progress=False, chunk_rows=2)
        assert os.fstat(old.fileno()).st_ino == (train / "samples.bin").stat().st_ino, "continued, not restarted"
    for split in ("train", "test"):
        assert store_bytes(tmp_path / "cut" / split) == store_bytes(tmp_path / "whole" / split), split


def test_a_damaged_store_is_prepared_again(photos, tmp_path):
    out = tmp_path / "store"
    first = prepare_folder(photos, S, workers=0, out=out, progress=False)["train"].samples.clone()
    with open(out / "train" / "samples.bin", "r+b") as f:
        f.truncate(1000)  # a disk that filled up, a copy cut short
    with pytest.raises(DataError, match="samples.bin has 1000 bytes"):
        open_store(out / "train")
    again = prepare_folder(photos, S, workers=0, out=out, progress=False)["train"]
    assert torch.equal(again.samples, first)
