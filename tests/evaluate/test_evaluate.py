"""Evaluation protocols on frozen features: linear probe, low-shot, clustering, and `selfsup eval`."""

import itertools
import json

import numpy as np
import pytest
import torch

import selfsup
from cli_helpers import run_cli
from selfsup.data import load_dataset
from selfsup.evaluate import (
    ari,
    balanced_subset,
    cluster_accuracy,
    cluster_eval,
    kmeans,
    knn_predict,
    linear_assignment,
    linear_probe,
    lowshot_probe,
    nmi,
    stratified_split,
)
from selfsup.evaluate.linear import fit_linear, standardize
from selfsup.evaluate.run import evaluate_run


def blobs(n_per_class, centers, noise=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.as_tensor(centers, dtype=torch.float32)
    y = torch.arange(len(centers)).repeat_interleave(n_per_class)
    return centers[y] + noise * torch.randn(len(y), centers.shape[1], generator=g), y


@pytest.fixture(scope="module")
def digits():
    d = load_dataset("digits")
    return d, d.train.reshape(len(d.train), -1).float() / 255, d.test.reshape(len(d.test), -1).float() / 255


# ----------------------------------------------------------------------------- linear probe


def test_linear_probe_separates_a_linearly_separable_set():
    g = torch.Generator().manual_seed(0)
    centers = 4 * torch.randn(5, 16, generator=g)
    x, y = blobs(60, centers, seed=1)
    xt, yt = blobs(40, centers, seed=2)
    res = linear_probe(x, y, xt, yt)
    assert res["top1"] == 1.0 and res["train_top1"] == 1.0
    assert res["weight_decay"] in [r["weight_decay"] for r in res["sweep"]]
    assert json.loads(json.dumps(res)) == res


def test_fit_linear_reaches_the_optimum_of_the_regularised_problem():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 6, generator=g), torch.randint(0, 3, (300,), generator=g)
    clf = fit_linear(x, y, 3, weight_decay=1e-2, tol=1e-6, rtol=0)
    w, b = clf.weight.double().requires_grad_(), clf.bias.double().requires_grad_()
    loss = torch.nn.functional.cross_entropy(x.double() @ w.T + b, y) + 0.5e-2 * w.pow(2).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-4 and b.grad.abs().max() < 1e-4


@pytest.mark.slow
def test_linear_probe_on_digit_pixels_and_the_sweep_never_sees_the_test_split(digits):
    d, train, test = digits
    res = linear_probe(train, d.train_labels, test, d.test_labels, d.num_classes)
    assert res["top1"] > 0.9
    assert res["seconds"] < 60
    # Scrambled test labels (and test features) change the score and nothing else.
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    other = linear_probe(train, d.train_labels, test.flip(1), d.test_labels[perm], d.num_classes)
    assert other["weight_decay"] == res["weight_decay"] and other["val_top1"] == res["val_top1"]
    assert [r["val_top1"] for r in other["sweep"]] == [r["val_top1"] for r in res["sweep"]]
    assert other["top1"] < 0.5


def test_standardize_uses_train_statistics_and_leaves_constant_dimensions_finite():
    train = torch.tensor([[0.0, 5.0], [2.0, 5.0]])
    test = torch.tensor([[1.0, 7.0]])
    tr, te = standardize(train, test)
    assert torch.allclose(tr, torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(te, torch.tensor([[0.0, 2.0]]))


def test_held_out_split_is_stratified_disjoint_and_seeded():
    y = torch.arange(10).repeat_interleave(torch.arange(10, 110, 10))  # class c has 10 (c+1) examples
    fit, held = stratified_split(y, 0.1, seed=3)
    assert len(set(fit.tolist()) & set(held.tolist())) == 0 and len(fit) + len(held) == len(y)
    assert torch.bincount(y[held], minlength=10).tolist() == list(range(1, 11))
    assert torch.equal(held, stratified_split(y, 0.1, seed=3)[1])
    assert not torch.equal(held, stratified_split(y, 0.1, seed=4)[1])


# ----------------------------------------------------------------------------- kNN


def test_majority_knn_on_a_toy_set_with_a_known_answer():
    # On a half circle: three class-0 points near angle 0, two class-1 points near angle pi/2.
    angles = torch.tensor([0.0, 0.1, 0.2, 1.5, 1.6])
    train = torch.stack([angles.cos(), angles.sin()], 1)
    labels = torch.tensor([0, 0, 0, 1, 1])
    query = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.7, 0.7]])  # angles pi/2, 0, pi/4
    assert knn_predict(train, labels, query, k=1, weighted=False).tolist() == [1, 0, 0]
    assert knn_predict(train, labels, query, k=3, weighted=False).tolist() == [1, 0, 0]  # 2:1, 3:0, 2:1
    assert knn_predict(train, labels, query, k=5, weighted=False).tolist() == [0, 0, 0]  # 3:2 everywhere


# ----------------------------------------------------------------------------- low-shot


def test_balanced_subset_sizes_balance_and_seeds():
    y = torch.arange(10).repeat(6000)  # Fashion-MNIST-sized: 60000 labels, 6000 a class
    for fraction, per_class in ((0.01, 60), (0.1, 600)):
        idx = balanced_subset(y, fraction, seed=0)
        assert len(idx) == round(fraction * len(y)) and len(set(idx.tolist())) == len(idx)
        assert torch.bincount(y[idx], minlength=10).tolist() == [per_class] * 10
    assert torch.equal(balanced_subset(y, 0.01, seed=1), balanced_subset(y, 0.01, seed=1))
    assert not torch.equal(balanced_subset(y, 0.01, seed=1), balanced_subset(y, 0.01, seed=2))


def test_balanced_subset_on_digits_has_every_class():
    y = load_dataset("digits").train_labels
    for fraction, size in ((0.01, 14), (0.1, 144)):
        for seed in range(3):
            counts = torch.bincount(y[balanced_subset(y, fraction, seed)], minlength=10)
            assert counts.sum() == size and counts.min() >= 1 and counts.max() - counts.min() <= 1
    # Tinier than one per class still gives one per class; a rare class gives what it has.
    assert torch.bincount(y[balanced_subset(y, 0.001, 0)], minlength=10).tolist() == [1] * 10
    rare = torch.cat([torch.zeros(2, dtype=torch.long), torch.ones(998, dtype=torch.long)])
    counts = torch.bincount(rare[balanced_subset(rare, 0.1, 0)])
    assert counts.tolist() == [2, 98]


def test_lowshot_probe_reports_mean_and_std_over_seeds():
    g = torch.Generator().manual_seed(0)
    centers = 3 * torch.randn(4, 8, generator=g)
    x, y = blobs(250, centers, noise=1.0, seed=1)
    xt, yt = blobs(50, centers, noise=1.0, seed=2)
    res = lowshot_probe(x, y, xt, yt, seeds=(0, 1, 2))
    assert set(res) >= {"1%", "10%"}
    assert res["1%"]["n"] == 10 and res["10%"]["n"] == 100
    for key in ("1%", "10%"):
        accs = res[key]["top1"]
        assert len(accs) == 3 and res[key]["mean"] == pytest.approx(np.mean(accs))
        assert res[key]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert res["10%"]["mean"] > 0.8


# ----------------------------------------------------------------------------- clustering


def test_hungarian_matches_brute_force_over_permutations():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n, m = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        cost = rng.integers(0, 9, (n, m)).astype(float) if trial % 2 else rng.normal(size=(n, m))
        rows, cols = linear_assignment(cost)
        assert len(rows) == min(n, m) and len(set(rows)) == len(set(cols)) == min(n, m)
        if n <= m:
            brute = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            brute = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert cost[rows, cols].sum() == pytest.approx(brute)
        best = (
            max(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n)) if n <= m else None
        )
        if best is not None:
            r, c = linear_assignment(cost, maximize=True)
            assert cost[r, c].sum() == pytest.approx(best)


def test_a_permuted_perfect_clustering_scores_one():
    y = torch.arange(7).repeat(20)
    perm = torch.tensor([3, 6, 0, 5, 1, 4, 2])
    pred = perm[y]
    assert cluster_accuracy(y, pred) == 1.0
    assert nmi(y, pred) == pytest.approx(1.0) and ari(y, pred) == pytest.approx(1.0)
    # One point moved: accuracy drops by exactly 1/N.
    pred2 = pred.clone()
    pred2[0] = perm[1]
    assert cluster_accuracy(y, pred2) == pytest.approx(1 - 1 / len(y))
    assert nmi(y, pred2) < 1 and ari(y, pred2) < 1


def test_nmi_and_ari_against_their_formulas_on_a_small_example():
    a = [0, 0, 0, 1, 1, 1]
    b = [0, 0, 1, 1, 2, 2]
    # ARI by hand: sum C(n_ij,2) = 2, row sums 3,3 -> 6, column sums 2,2,2 -> 3, C(6,2) = 15.
    expected = 6 * 3 / 15
    assert ari(a, b) == pytest.approx((2 - expected) / ((6 + 3) / 2 - expected))
    # NMI by hand: MI = sum p_ij log(p_ij / (p_i p_j)).
    p = np.array([[2, 1, 0], [0, 1, 2]]) / 6
    pi, pj = p.sum(1), p.sum(0)
    mi = sum(p[i, j] * np.log(p[i, j] / (pi[i] * pj[j])) for i in range(2) for j in range(3) if p[i, j] > 0)
    h = lambda q: -(q * np.log(q)).sum()  # noqa: E731
    assert nmi(a, b) == pytest.approx(mi / ((h(pi) + h(pj)) / 2))
    assert cluster_accuracy(a, b) == pytest.approx(4 / 6)


def test_kmeans_recovers_separated_blobs_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centers = 5 * torch.randn(6, 10, generator=g)
    x, y = blobs(50, centers, seed=3)
    c1, l1, i1 = kmeans(x, 6, n_init=3, seed=7)
    c2, l2, i2 = kmeans(x, 6, n_init=3, seed=7)
    assert torch.equal(l1, l2) and i1 == i2
    assert cluster_accuracy(y, l1) == 1.0
    res = cluster_eval(x, x[:60], y[:60], 6, n_init=3)
    assert res["acc"] == 1.0 and res["nmi"] == pytest.approx(1.0) and res["ari"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- run folders and the CLI


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalrun") / "run"
    cfg = selfsup.build_config(
        "byol-digits",
        [
            "augment.size=8",
            "data.subset=256",
            "eval.diagnose_every=0",
            "method_args.proj_hidden=64",
            "method_args.pred_hidden=64",
        ],
        epochs=2,
    )
    selfsup.train(cfg, out=str(out))
    return out


@pytest.mark.slow
def test_eval_cli_runs_every_protocol_as_json_and_records_them(run_dir, capsys):
    before = json.loads((run_dir / "summary.json").read_text())
    code, out, err = run_cli(
        capsys, "eval", run_dir, "--protocol", "knn,linear,lowshot,cluster", "--json", "--cache-features"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["protocols"] == ["knn", "linear", "lowshot", "cluster"]
    headline = [
        "knn_top1",
        "knn_majority_top1",
        "linear_top1",
        "lowshot_1pct_top1",
        "lowshot_1pct_top1_std",
        "lowshot_10pct_top1",
        "lowshot_10pct_top1_std",
        "cluster_acc",
        "cluster_nmi",
        "cluster_ari",
    ]
    for key in headline:
        assert isinstance(result[key], float) and isinstance(result[f"{key}_raw"], float), key
    assert result["knn"] == {"k": 200, "t": 0.1, "majority_k": 20}
    assert 0.5 < result["linear_top1"] <= 1 and result["linear_top1_raw"] > 0.9
    assert result["linear"]["weight_decay"] in [r["weight_decay"] for r in result["linear"]["sweep"]]
    assert result["lowshot"]["1%"]["n"] == 14 and len(result["lowshot"]["10%"]["top1_raw"]) == 3
    assert result["cluster"]["k"] == 10 and result["data"]["n_train"] == 1437

    summary = json.loads((run_dir / "summary.json").read_text())
    assert {k: summary[k] for k in before} == before  # existing keys kept
    entry = summary["eval"]["digits"]
    assert all(entry[k] == result[k] for k in headline) and entry["linear"] == result["linear"]

    # The Python API: a second protocol set merges into the entry; cached features are reused.
    cached = sorted(p.name for p in run_dir.glob("features_*.pt"))
    assert cached == ["features_digits_test.pt", "features_digits_train.pt"]
    stamp = (run_dir / "features_digits_train.pt").stat().st_mtime_ns
    again = evaluate_run(run_dir, protocols=["knn"], knn_k=5, cache_features=True, raw=False)
    assert again["knn_top1"] == pytest.approx(result["knn_top1"]) and again["knn"]["majority_k"] == 5
    assert "knn_top1_raw" not in again
    assert (run_dir / "features_digits_train.pt").stat().st_mtime_ns == stamp
    entry = json.loads((run_dir / "summary.json").read_text())["eval"]["digits"]
    assert entry["knn"]["majority_k"] == 5 and entry["linear_top1"] == result["linear_top1"]
    assert "knn_top1_raw" not in entry  # the knn results were replaced as a whole


@pytest.mark.slow
def test_the_collapse_alarm_stays_quiet_on_a_real_encoder(run_dir):
    from selfsup.encoder import load_encoder, preprocess_fn
    from selfsup.evaluate import collapse_alarm, diagnose, extract_features

    encoder = load_encoder(run_dir)
    features = extract_features(encoder, load_dataset("digits").test[:256], preprocess_fn(encoder))
    diag = diagnose(features)
    assert collapse_alarm(diag) == [], diag


@pytest.mark.slow
def test_eval_table_names_every_protocol(run_dir, capsys):
    code, out, err = run_cli(capsys, "eval", run_dir, "--protocol", "knn,cluster", "--no-raw-pixels")
    assert code == 0, err
    assert "kNN weighted k=200" in out and "kNN majority k=20" in out and "k-means k=10" in out and "NMI" in out


@pytest.mark.parametrize(
    "protocol, match",
    [
        ("linaer", "unknown protocol 'linaer'; choose one of: linear"),
        ("knn,clustr", "unknown protocol 'clustr'; choose one of: cluster"),
        (",", "no protocol given"),
    ],
)
def test_unknown_protocols_are_one_line_errors(tmp_path, capsys, protocol, match):
    code, _, err = run_cli(capsys, "eval", tmp_path, "--protocol", protocol)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1


def test_eval_of_a_run_without_encoder_is_a_one_line_error(run_dir, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    code, _, err = run_cli(capsys, "eval", tmp_path / "run", "--protocol", "linear")
    assert code == 2 and "encoder.json is missing" in err and len(err.strip().splitlines()) == 1


def test_eval_on_unlabelled_or_mismatched_data_is_a_one_line_error(run_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "nolabels.npy", rng.integers(0, 256, (20, 8, 8), dtype=np.uint8))
    code, _, err = run_cli(
        capsys, "eval", run_dir, "--data", f"npy:{tmp_path / 'nolabels.npy'}", "--protocol", "cluster"
    )
    assert code == 2 and "has no labels" in err and "cluster protocol needs labelled" in err
    assert len(err.strip().splitlines()) == 1

    np.savez(
        tmp_path / "rgb.npz",
        x_train=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
        y_train=np.arange(20) % 2,
        x_test=rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8),
        y_test=np.arange(10) % 2,
    )
    code, _, err = run_cli(capsys, "eval", run_dir, "--data", f"npz:{tmp_path / 'rgb.npz'}")
    assert code == 2 and "3-channel images but the encoder takes 1" in err
    assert len(err.strip().splitlines()) == 1
