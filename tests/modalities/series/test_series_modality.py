"""The series modality behind the seam: sources as `selfsup data` lists them, the views each plan gets,
the input spec and what it does when data is loaded for a trained encoder, the training-length settings."""

from __future__ import annotations

import pytest
import torch
from _series_archives import archive, require

from selfsup.config import build_config
from selfsup.data.sources import describe_sources, load_dataset
from selfsup.errors import DataError, UsageError
from selfsup.methods import METHODS, fits
from selfsup.modalities import MODALITIES, ViewPlan
from selfsup.modalities.series import fit_to_data

SERIES = MODALITIES["series"]


def test_data_lists_every_archive_and_where_it_was_found():
    require("aeon")
    rows = {row["name"]: row for row in describe_sources()}
    assert rows["ucr:GunPoint"]["available"] and "aeon" in rows["ucr:GunPoint"]["location"]
    assert {"ucr:NAME", "ts:PATH", "ucr:BasicMotions", "ucr:JapaneseVowels"} <= set(rows)


def test_the_series_methods_and_the_generic_ones_fit_series_and_image_only_ones_do_not():
    fitting = {name for name, cls in METHODS.items() if fits(cls, SERIES)}
    assert {"ts2vec", "tstcc", "tfc", "frameproj", "simclr", "byol", "vicreg"} <= fitting
    assert not {"mae", "rotnet", "dino", "swav"} & fitting
    with pytest.raises(UsageError, match="does not work on series data"):
        build_config(None, method="mae", data="ucr:GunPoint")
    with pytest.raises(UsageError, match="does not work on image data"):
        build_config(None, method="ts2vec", data="digits")


def test_views_are_seeded_per_sample_and_a_shard_gets_its_rows_of_the_global_batch():
    x = archive("GunPoint").train[:8]
    spec = {"channels": 1, "length": 150}
    for plan in (ViewPlan("pair", "simclr"), ViewPlan("asymmetric_pair", "tstcc"), ViewPlan("pair", "tfc")):
        views = SERIES.views(SERIES.default_views(plan, None), spec)
        first = views(x, torch.Generator().manual_seed(0))
        assert len(first) == 2 and all(v.shape == x.shape for v in first)
        assert torch.equal(first[1], views(x, torch.Generator().manual_seed(0))[1])
        assert not torch.equal(first[1], views(x, torch.Generator().manual_seed(1))[1])
        for rank in (0, 1):  # two processes, each with every other row, draw what one process draws
            mine = views(x[rank::2], torch.Generator().manual_seed(0), (rank, 2))
            torch.testing.assert_close(mine[1], first[1][rank::2])


def test_tstcc_views_are_its_weak_and_strong_augmentations():
    weak, strong = SERIES.default_views(ViewPlan("asymmetric_pair", "tstcc"), None)
    assert weak.tstcc_scale == 1.1 and weak.jitter == 0 and weak.permute_segments == 0
    assert strong.permute_segments == 8 and strong.jitter == 0.8 and strong.tstcc_scale == 0


def test_input_spec_records_the_training_normalisation_and_sources_apply_it():
    require("aeon")
    cfg = build_config("ts2vec-ucr", data="ucr:PickupGestureWiimoteZ")
    pickup = load_dataset("ucr:PickupGestureWiimoteZ")
    spec = SERIES.input_spec(pickup, cfg)
    assert spec["channels"] == 1 and spec["length"] == 361 and not spec["equal_length"]
    assert spec["normalisation"]["rule"] == "global"
    # GunPoint loaded for an encoder trained on Pickup: Pickup's mean and std, not GunPoint's own (none)
    gun = load_dataset("ucr:GunPoint").train
    again = load_dataset("ucr:GunPoint", input_spec=spec).train
    mean, std = spec["normalisation"]["mean"][0], spec["normalisation"]["std"][0]
    torch.testing.assert_close(again, ((gun.double() - mean) / std).float())
    with pytest.raises(DataError, match="6-channel series but the encoder was trained on 1-channel"):
        load_dataset(
            "ucr:BasicMotions",
            input_spec={**spec, "normalisation": {"rule": "per_channel", "mean": [0.0], "std": [1.0]}},
        )
    with pytest.raises(UsageError, match="takes 1 channels"):
        SERIES.check_input(load_dataset("ucr:BasicMotions"), spec)


def test_raw_features_and_the_evaluation_transform_handle_the_padding():
    x = archive("PickupGestureWiimoteZ").test[:4]
    raw = SERIES.raw_features(x)
    assert raw.shape == (4, 361) and torch.isfinite(raw).all()
    assert (raw[torch.isnan(x.flatten(1))] == 0).all()
    transform = SERIES.eval_transform({"channels": 1, "length": 400})
    out = transform(x)
    assert out.shape == (4, 1, 400) and torch.isnan(out[..., 361:]).all()


def test_iterations_and_batch_follow_the_data():
    require("aeon")
    gun = load_dataset("ucr:GunPoint")  # 50 series of 150 steps: 7,500 values
    cfg = build_config("ts2vec-ucr", data="ucr:GunPoint")
    fit_to_data(cfg, gun)
    assert cfg.train.batch_size == 8 and cfg.train.epochs == 34  # 200 steps at 6 a epoch
    cfg = build_config("tstcc-ucr", data="ucr:GunPoint", batch_size=64)
    lr = cfg.optim.lr
    fit_to_data(cfg, gun)  # a batch above the split's 50: 50, and the same step size
    assert cfg.train.batch_size == 50 and cfg.optim.lr == pytest.approx(lr * 64 / 50) and cfg.train.epochs == 200
    cfg = build_config("ts2vec-ucr", data="ucr:GunPoint", sets=["data.options.iterations=0"], epochs=3)
    fit_to_data(cfg, gun)
    assert cfg.train.epochs == 3
    with pytest.raises(UsageError, match="iterations"):
        build_config("ts2vec-ucr", sets=["data.options.iterations=-5"])
    with pytest.raises(UsageError, match="unknown data.options key 'iteration'"):
        load_dataset("ucr:GunPoint", options={"iteration": 3})


def test_epochs_asked_for_by_name_win_over_the_recipes_step_budget():
    from selfsup.config import build_config

    assert build_config("ts2vec-ucr").data.options["iterations"] == -1  # TS2Vec's rule: epochs from the data
    for cfg in (build_config("ts2vec-ucr", epochs=2), build_config("ts2vec-ucr", ["train.epochs=2"])):
        assert cfg.train.epochs == 2 and cfg.data.options["iterations"] == 0
