"""Embeddings put to work: exact chunked nearest neighbours, near-duplicates and greedy k-center
against naive references on the digits, and the commands on a trained run (the fef551e fixture's
encoder) with real image files written by Pillow."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.data.sources import load_dataset
from selfsup.embeddings import duplicates, embed_split, k_center, nearest_neighbors

FIXTURE = Path(__file__).with_name("fixtures") / "old-runs-fef551e" / "finished"


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    """Real features: the digits' raw pixels, (1437, 64)."""
    return load_dataset("digits").train.reshape(1437, -1).float()


@pytest.fixture
def run(tmp_path):
    return Path(shutil.copytree(FIXTURE, tmp_path / "run"))


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def cosine(x: np.ndarray) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def test_nearest_neighbours_block_by_block_are_the_exact_ones(pixels):
    queries, memory = pixels[:50], pixels[100:400]
    sims, idx = nearest_neighbors(queries, memory, k=7, chunk=23)  # many blocks, a ragged last one
    full = cosine(np.concatenate([queries.numpy(), memory.numpy()]).astype(np.float64))[:50, 50:]
    expected = np.sort(full, axis=1)[:, ::-1][:, :7]
    np.testing.assert_allclose(sims.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(full, idx.numpy(), 1), expected, atol=1e-5)
    assert nearest_neighbors(queries, memory[:3], k=10)[1].shape == (50, 3)


def test_duplicates_finds_every_pair_above_the_threshold(pixels):
    x = torch.cat([pixels[:300], pixels[[5, 17, 17]]])  # three planted copies: 5 once, 17 twice
    i, j, s, truncated = duplicates(x, 0.97, chunk=64)
    sim = cosine(x.numpy().astype(np.float64))
    a, b = np.triu_indices(len(x), 1)
    keep = sim[a, b] >= 0.97
    assert set(zip(i.tolist(), j.tolist())) == set(zip(a[keep].tolist(), b[keep].tolist())) and not truncated
    assert {(5, 300), (17, 301), (17, 302), (301, 302)} <= set(zip(i.tolist(), j.tolist()))
    assert torch.all(s[:-1] >= s[1:])  # most similar first
    assert len(duplicates(x, 0.97, chunk=64, max_pairs=2)[0]) == 2 and duplicates(x, 0.97, max_pairs=2)[3]


def naive_k_center(x: np.ndarray, n: int, first: int) -> tuple[list[int], float]:
    """Sener & Savarese's Alg. 1 written plainly: each round, every point's distance to every chosen
    point, from scratch, in float64."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    chosen = [first]
    while len(chosen) < n:
        d = np.sqrt(((x[:, None, :] - x[None, chosen, :]) ** 2).sum(-1)).min(axis=1)
        chosen.append(int(d.argmax()))
    d = np.sqrt(((x[:, None, :] - x[None, chosen, :]) ** 2).sum(-1)).min(axis=1)
    return chosen, float(d.max())


def test_k_center_matches_the_naive_reference(pixels):
    x = pixels[:120] + torch.rand(120, 64, generator=torch.Generator().manual_seed(0)) * 1e-3  # no ties
    chosen, radius = k_center(x, 12, seed=3)
    first = int(torch.randint(120, (1,), generator=torch.Generator().manual_seed(3)))
    expected, expected_radius = naive_k_center(x.numpy().astype(np.float64), 12, first)
    assert chosen.tolist() == expected
    assert radius[-1].item() == pytest.approx(expected_radius, abs=1e-5)
    assert torch.all(radius[:-1] >= radius[1:])  # the cover only shrinks
    every, cover = k_center(x[:40], 40)
    assert sorted(every.tolist()) == list(range(40)) and cover[-1] == 0


def test_k_center_mistakes_are_one_line_errors(pixels, run, capsys):
    code = main(["select", str(run), "--data", "digits", "--n", "5000", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot select 5000 of 1437 items" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_neighbors_of_test_items_are_the_nearest_training_items(run, capsys, tmp_path):
    out = tmp_path / "nb.csv"
    argv = ["neighbors", str(run), "--data", "digits", "--query", "0,5", "7-8", "--k", "3", "--out", str(out)]
    assert main(argv + ["--device", "cpu"]) == 0
    rows = read_csv(out)
    assert [(int(r["query_index"]), int(r["rank"])) for r in rows] == [(q, k) for q in (0, 5, 7, 8) for k in (1, 2, 3)]
    train, test = embed_split(run, "digits", "train", device="cpu"), embed_split(run, "digits", "test", device="cpu")
    sim = cosine(torch.cat([test.features[[0, 5, 7, 8]], train.features]).double().numpy())[:4, 4:]
    for q in range(4):
        got = [int(r["neighbor_index"]) for r in rows[3 * q : 3 * q + 3]]
        assert got == list(np.argsort(-sim[q], kind="stable")[:3])
    assert "for each of 4 queries" in capsys.readouterr().out


def write_digits(folder: Path, images: np.ndarray, names: list[str]) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, names):
        Image.fromarray(img.astype(np.uint8), mode="L").save(folder / name)


def digit_images(n: int) -> np.ndarray:
    """The first ``n`` digits as 8-bit images (the bundled digits are 0..255 after the source's scaling)."""
    return load_dataset("digits").train[:n, 0].numpy()


@pytest.mark.slow
def test_a_query_file_finds_the_training_image_it_was_written_from(run, tmp_path):
    images = digit_images(40)
    write_digits(tmp_path / "q", images[[3, 21]], ["three.png", "twentyone.png"])
    out = tmp_path / "nb.csv"
    files = [str(tmp_path / "q" / "three.png"), str(tmp_path / "q" / "twentyone.png")]
    assert main(["neighbors", str(run), "--data", "digits", "--query", *files, "--k", "2", "--out", str(out)]) == 0
    top = [r for r in read_csv(out) if r["rank"] == "1"]
    assert [r["query"] for r in top] == files
    assert [int(r["neighbor_index"]) for r in top] == [3, 21], top
    # Not 1: the folder store keeps images at 16 px (1.5 x the 8-px view, rounded up) and resamples them.
    assert all(float(r["similarity"]) > 0.9 for r in top), [r["similarity"] for r in top]


@pytest.mark.slow
def test_duplicates_finds_the_copies_and_near_copies_planted_in_a_folder(run, tmp_path, capsys):
    images = digit_images(60)
    rng = np.random.default_rng(0)
    names = [f"d{i:03d}.png" for i in range(60)]
    planted = {}
    for k, src in enumerate([4, 11, 29]):  # exact copies
        names.append(f"copy{k}.png")
        images = np.concatenate([images, images[src][None]])
        planted[f"copy{k}.png"] = names[src]
    for k, src in enumerate([7, 40, 52]):  # near copies: brighter by 6 levels and a little noise
        near = np.clip(images[src].astype(int) + 6 + rng.integers(-3, 4, images[src].shape), 0, 255)
        names.append(f"near{k}.png")
        images = np.concatenate([images, near[None]])
        planted[f"near{k}.png"] = names[src]
    write_digits(tmp_path / "photos", images, names)
    out = tmp_path / "dup.csv"
    argv = [
        "duplicates",
        str(run),
        "--data",
        f"folder:{tmp_path / 'photos'}",
        "--threshold",
        "0.995",
        "--out",
        str(out),
    ]
    assert main(argv + ["--device", "cpu"]) == 0, capsys.readouterr().err
    rows = read_csv(out)
    named = [(r["a"], r["b"]) for r in rows]  # the folder's store records its files: pairs are named by file
    assert all(a.endswith(".png") and b.endswith(".png") for a, b in named)
    found = {frozenset((Path(a).name, Path(b).name)) for a, b in named}
    assert {frozenset(p) for p in planted.items()} <= found
    sims = {frozenset((Path(a).name, Path(b).name)): float(r["similarity"]) for (a, b), r in zip(named, rows)}
    assert all(sims[frozenset((c, s))] > 0.999 for c, s in planted.items() if c.startswith("copy"))


@pytest.mark.slow
def test_select_writes_a_diverse_subset_and_the_report_shows_neighbours(run, tmp_path, capsys):
    out = tmp_path / "sel.csv"
    assert main(["select", str(run), "--data", "digits", "--n", "30", "--out", str(out), "--device", "cpu"]) == 0
    rows = read_csv(out)
    assert len(rows) == 30 and len({r["index"] for r in rows}) == 30
    radius = [float(r["radius"]) for r in rows]
    assert radius == sorted(radius, reverse=True)
    labels = load_dataset("digits").train_labels[[int(r["index"]) for r in rows]]
    assert len(set(labels.tolist())) >= 8  # a diverse subset of the digits spans (almost) every class

    assert main(["report", str(run), "--device", "cpu"]) == 0
    page = (run / "report.html").read_text()
    assert "alt='neighbours'" in page and "nearest training images" in page
