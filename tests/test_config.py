import pytest
import yaml

from selfsup.config import build_config, dump_config, load_run_config, recipe_names
from selfsup.errors import UsageError


def test_shipped_recipes_resolve():
    for name in recipe_names():
        cfg = build_config(name)
        assert len(cfg.augment.views) >= 1


def test_byol_default_views_are_the_papers_asymmetric_pair():
    cfg = build_config(None, method="byol", data="npz:/nonexistent.npz")  # no shipped recipe
    v1, v2 = cfg.view_configs()
    assert (v1.blur_p, v1.solarize_p) == (1.0, 0.0)
    assert (v2.blur_p, v2.solarize_p) == (0.1, 0.2)


def test_set_overrides_nested_keys_and_single_views():
    cfg = build_config(
        "byol-fashion-mnist",
        [
            "optim.lr=0.5",
            "augment.views.1.solarize_p=0.3",
            "augment.common.crop_scale=[0.2, 1.0]",
            "method_args.tau_base=0.9",
        ],
    )
    assert cfg.optim.lr == 0.5
    assert cfg.view_configs()[1].solarize_p == 0.3
    assert cfg.view_configs()[0].solarize_p == 0.0
    assert all(v.crop_scale == (0.2, 1.0) for v in cfg.view_configs())
    assert cfg.method_args["tau_base"] == 0.9


def test_auto_true_false_keys_take_the_yaml_words_true_and_false():
    # YAML reads the words as booleans; the "auto | true | false" keys are strings.
    cfg = build_config("byol-fashion-mnist", ["train.channels_last=true", "train.sync_bn=false"])
    assert (cfg.train.channels_last, cfg.train.sync_bn) == ("true", "false")
    with pytest.raises(UsageError, match="channels_last"):
        build_config("byol-fashion-mnist", ["train.channels_last=sometimes"])


def test_flags_override_the_recipe():
    cfg = build_config("byol-fashion-mnist", epochs=3, batch_size=64, device="cpu")
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.device) == (3, 64, "cpu")


def test_without_a_recipe_the_shipped_method_data_recipe_is_used():
    assert build_config(None, method="byol", data="digits").model.backbone == "resnet-small"


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = build_config("byol-digits", ["augment.views.0.brightness=0.1"])
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    again = load_run_config(tmp_path / "config.yaml")
    assert again == cfg


@pytest.mark.parametrize(
    "sets, match",
    [
        (["optim.lrr=1"], r"unknown config key 'optim.lrr'; valid keys in optim: lr"),
        (["trian.epochs=1"], r"unknown config key 'trian'; valid keys: train"),
        (["optim.lr=fast"], r"optim.lr expects float"),
        (["method_args.tau=0.9"], r"unknown config key 'method_args \(byol\).tau'; .*: tau_base"),
        (["augment.views.0.blurp=0.5"], r"augment.views.0.blurp.*blur_p"),
        (["augment.views.5.blur_p=0.5"], r"augment.views has 6 entries but byol uses 2 views"),
        (["train.epochs=0"], r"train.epochs must be at least 1"),
        (["optim.lr"], r"--set expects key=value"),
    ],
)
def test_bad_config_is_one_clear_usage_error(sets, match):
    with pytest.raises(UsageError, match=match):
        build_config("byol-digits", sets)


def test_unknown_recipe_and_method_name_the_closest_choice_first():
    with pytest.raises(UsageError, match=r"unknown recipe 'byol-digit'; choose one of: byol-digits"):
        build_config("byol-digit")
    with pytest.raises(UsageError, match=r"unknown method 'byl'; choose one of: byol"):
        build_config(None, method="byl")


def test_recipe_file_with_invalid_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [byol\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        build_config(str(bad))
    good = tmp_path / "mine.yaml"
    good.write_text(yaml.safe_dump({"method": "byol", "train": {"epochs": 7}}))
    assert build_config(str(good)).train.epochs == 7


def test_multicrop_method_args_shape_the_views():
    # DINO's and SwAV's number of local crops is a method argument; the views must follow it.
    cfg = build_config("dino-digits", ["method_args.n_local=3"])
    assert len(cfg.augment.views) == 2 + 3
    cfg = build_config("swav-digits", ["method_args.n_local=0"])
    assert len(cfg.augment.views) == 2
