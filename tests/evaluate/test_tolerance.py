"""Tolerance (Wang & Liu 2021): the mean similarity of same-class pairs, beside the uniformity in the
diagnostics, the kNN protocol and a real run's metrics."""

import json

import pytest
import torch
import torch.nn.functional as F

import selfsup
from selfsup.config import build_config
from selfsup.data import load_dataset
from selfsup.encoder import load_encoder, preprocess_fn
from selfsup.evaluate import extract_features
from selfsup.evaluate.diagnostics import diagnose, geometry, tolerance, uniformity


def naive_tolerance(z, labels):
    """The definition written out: the mean of s(x)^T s(y) over pairs x != y with l(x) = l(y)."""
    s = [v / v.norm() if v.norm() > 0 else v for v in z.double()]
    sims = [float(s[i] @ s[j]) for i in range(len(s)) for j in range(i + 1, len(s)) if int(labels[i]) == int(labels[j])]
    return sum(sims) / len(sims)


def test_tolerance_is_the_mean_similarity_of_same_class_pairs_computed_with_a_loop():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 7, generator=g)
    z[5] = 0  # a zero row: normalised to 0, it adds pairs of similarity 0
    labels = torch.randint(0, 4, (40,), generator=g)
    labels[-1] = 9  # a class of one sample: no pair
    assert tolerance(z, labels) == pytest.approx(naive_tolerance(z, labels), rel=1e-12)
    # Labels need not be 0..K-1, and the scale of an embedding does not matter.
    assert tolerance(3 * z, labels * 10 - 7) == pytest.approx(tolerance(z, labels), rel=1e-7)


def test_tolerance_is_one_when_every_class_collapses_and_errors_say_why():
    centres = F.normalize(torch.randn(3, 5, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    assert tolerance(centres[labels] * 4, labels) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="no two samples share a label"):
        tolerance(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="3 labels for 4 embeddings"):
        tolerance(torch.randn(4, 4), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="integer classes"):
        tolerance(torch.randn(4, 4), torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_diagnose_reports_tolerance_beside_uniformity_when_labels_are_given():
    g = torch.Generator().manual_seed(2)
    h, z = torch.randn(64, 32, generator=g), torch.randn(64, 16, generator=g)
    labels = torch.randint(0, 5, (64,), generator=g)
    assert "tolerance" not in diagnose(h, z)
    diag = diagnose(h, z, labels=labels)
    assert diag["tolerance"] == pytest.approx(tolerance(h, labels))
    assert diag["proj_tolerance"] == pytest.approx(tolerance(z, labels))
    assert diag["proj_uniformity"] == pytest.approx(uniformity(z))
    assert set(diagnose(h, labels=labels)) & {"proj_tolerance", "proj_uniformity"} == set()


def test_digit_pixels_of_one_class_are_more_alike_than_pixels_of_any_two_digits():
    d = load_dataset("digits")
    x = d.test.reshape(len(d.test), -1).float()
    same = tolerance(x, d.test_labels)
    everything = tolerance(x, torch.zeros_like(d.test_labels))  # one class: the mean over all pairs
    assert same > everything + 0.1
    # geometry: the uniformity of a seeded sample (all of them when there are fewer), the tolerance of all
    g = geometry(x, d.test_labels, max_samples=100, seed=3)
    assert g["tolerance"] == same and g["uniformity"] != uniformity(x)
    assert geometry(x, d.test_labels, max_samples=len(x))["uniformity"] == pytest.approx(uniformity(x), rel=1e-12)


@pytest.mark.slow
def test_a_short_digits_run_logs_the_tolerance_of_its_probe_batch(tmp_path):
    cfg = build_config("simclr-digits", ["method_args.proj_hidden=64", "eval.probe_size=300"], epochs=2)
    selfsup.train(cfg, out=tmp_path / "run")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    diags = [m for m in metrics if m.get("event") == "diagnostics"]
    assert [m["epoch"] for m in diags] == [1, 2]
    last = diags[-1]
    for key in ("uniformity", "tolerance", "proj_uniformity", "proj_tolerance"):
        assert -4 <= last[key] <= 1, key
    # The logged tolerance is that of the exported encoder on the probe batch (a seeded sample of
    # the training split) with those samples' own labels: recomputed here from the definitions.
    data = load_dataset("digits")
    keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))[:300]
    encoder = load_encoder(tmp_path / "run")
    features = extract_features(encoder, data.train[keep], preprocess_fn(encoder))
    assert last["tolerance"] == pytest.approx(naive_tolerance(features, data.train_labels[keep]), abs=1e-4)
    shuffled = data.train_labels[keep][torch.randperm(300, generator=torch.Generator().manual_seed(1))]
    assert abs(last["tolerance"] - tolerance(features, shuffled)) > 1e-3
