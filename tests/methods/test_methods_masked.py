"""MAE, MP3, the shared random masking, fine-tuning, and the ViT methods from the command line."""

import json

import numpy as np
import pytest
import torch

from selfsup.backbones import build_backbone
from selfsup.backbones.vit import VisionTransformer, patchify, unpatchify
from selfsup.data import load_dataset
from selfsup.errors import UsageError
from selfsup.evaluate.finetune import Classifier, FinetuneArgs, finetune, param_groups
from selfsup.methods import METHODS
from selfsup.methods.mae import masked_patch_loss
from selfsup.methods.mp3 import context_mask
from selfsup.methods.parts.masking import random_keep
from selfsup.modalities.image import MODALITY, ViewConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on shared cores: one thread is faster than two fighting over them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_vit(**kw):
    args = dict(in_channels=1, image_size=16, patch_size=2, embed_dim=32, depth=2, num_heads=4)
    args.update(kw)
    return VisionTransformer(**args)


def mae(**kw):
    torch.manual_seed(0)
    cls = METHODS["mae"]
    return cls(tiny_vit(), cls.Args(decoder_dim=32, decoder_depth=1, decoder_heads=4, **kw))


def mp3(**kw):
    torch.manual_seed(0)
    cls = METHODS["mp3"]
    return cls(tiny_vit(pool="mean", pos_embed="learned"), cls.Args(**kw))


# ------------------------------------------------------------------------------------------ masking
def test_random_keep_masks_the_requested_fraction_per_sample():
    keep, mask = random_keep(6, 64, 0.75, "cpu", torch.Generator().manual_seed(0))
    assert keep.shape == (6, 16) and mask.shape == (6, 64)
    assert torch.all(mask.sum(1) == 48)
    for i in range(6):
        assert len(set(keep[i].tolist())) == 16 and torch.all(mask[i, keep[i]] == 0)
    assert len({tuple(sorted(k.tolist())) for k in keep}) == 6  # each sample its own subset


# ---------------------------------------------------------------------------------------------- MAE
def test_mae_encoder_sees_only_the_visible_tokens():
    method = mae(mask_ratio=0.75)
    counts = []
    method.backbone.blocks[0].register_forward_pre_hook(lambda m, inputs: counts.append(inputs[0].shape[1]))
    method([torch.randn(4, 1, 16, 16)])
    assert counts == [1 + 16]  # the class token and 25% of 64 patches


def test_mae_loss_counts_masked_patches_only():
    torch.manual_seed(0)
    target, pred = torch.randn(3, 16, 12), torch.randn(3, 16, 12)
    mask = torch.zeros(3, 16)
    mask[:, :4] = 1
    loss = masked_patch_loss(pred, target, mask)
    moved = pred.clone()
    moved[:, 4:] += 3.0  # visible patches' predictions
    assert masked_patch_loss(moved, target, mask) == pytest.approx(loss.item())
    moved = pred.clone()
    moved[:, :4] += 3.0
    assert masked_patch_loss(moved, target, mask).item() != pytest.approx(loss.item())
    # norm-pix: predicting the per-patch normalised target is a zero loss
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert masked_patch_loss(normed, target, mask).item() == pytest.approx(0.0, abs=1e-10)
    assert masked_patch_loss(target, target, mask, norm_pix=False).item() == 0.0


def test_mae_gradient_reaches_masked_predictions_only():
    method = mae()
    x = torch.randn(4, 1, 16, 16)
    pred, mask = method.reconstruct(x)
    pred.retain_grad()
    masked_patch_loss(pred, patchify(x, 2), mask).backward()
    per_patch = pred.grad.abs().sum(-1)
    assert torch.all(per_patch[mask == 0] == 0) and torch.all(per_patch[mask == 1] > 0)


def test_mae_step_trains_encoder_and_decoder_but_not_the_sincos_embedding():
    method = mae()
    opt = torch.optim.AdamW(method.parameters(), lr=1e-3)
    before = {k: v.detach().clone() for k, v in method.state_dict().items()}
    out = method([torch.randn(8, 1, 16, 16)])
    out["loss"].backward()
    opt.step()
    after = method.state_dict()
    for name in (
        "backbone.blocks.0.attn.qkv.weight",
        "backbone.patch_embed.weight",
        "mask_token",
        "decoder_pred.weight",
        "decoder_blocks.0.mlp.0.weight",
    ):
        assert not torch.equal(before[name], after[name]), name
    assert torch.equal(before["backbone.pos_embed"], after["backbone.pos_embed"])


def test_mae_visualize_masks_and_pastes_back_the_visible_patches():
    method = mae()
    x = torch.randn(3, 1, 16, 16)
    images = method.visualize(x, seed=1)
    assert set(images) == {"masked", "reconstruction"}
    assert images["masked"].shape == x.shape == images["reconstruction"].shape
    masked, rec, orig = (patchify(t, 2) for t in (images["masked"], images["reconstruction"], x))
    hidden = masked.abs().sum(-1) == 0
    assert torch.all(hidden.sum(1) == 48)  # 75% of the 64 patches blanked
    assert torch.equal(rec[~hidden], orig[~hidden])
    assert not torch.allclose(rec[hidden], orig[hidden])
    assert method.training  # the mode is restored


def test_mae_and_mp3_need_a_vision_transformer():
    resnet = build_backbone("resnet-small", {"channels": 1})
    for name in ("mae", "mp3"):
        with pytest.raises(UsageError, match="vision transformer"):
            METHODS[name](resnet, METHODS[name].Args())


# ---------------------------------------------------------------------------------------------- MP3
def test_mp3_has_no_position_information_in_the_input_path():
    method = mp3().eval()
    vit = method.backbone
    assert torch.all(vit.pos_embed == 0) and not vit.pos_embed.requires_grad
    x = torch.randn(2, 1, 16, 16)
    perm = torch.randperm(64)
    shuffled = unpatchify(patchify(x, 2)[:, perm], 2, 1)  # the same patches at other places
    keep = torch.stack([torch.randperm(64)[:32] for _ in range(2)])
    inverse = perm.argsort()  # where each original patch went
    logits = method.position_logits(x, keep)
    logits_shuffled = method.position_logits(shuffled, inverse[keep])
    # permuting the input patches permutes the predictions the same way: nothing but content
    assert torch.allclose(logits_shuffled, logits[:, perm], atol=1e-5)


def test_mp3_context_is_the_only_keys_and_values():
    keep = torch.tensor([[0, 3], [1, 2]])
    allowed = context_mask(keep, 4)
    assert allowed.shape == (2, 1, 1, 4)
    assert allowed[:, 0, 0].tolist() == [[True, False, False, True], [False, True, True, False]]
    method = mp3(mask_ratio=0.5).eval()
    x = torch.randn(1, 1, 16, 16)
    keep = torch.randperm(64)[:32][None]
    logits = method.position_logits(x, keep)
    patches = patchify(x, 2)
    others = torch.ones(64, dtype=torch.bool)
    others[keep[0]] = False
    patches[:, others] = torch.randn_like(patches[:, others])  # change only non-context patches
    changed = method.position_logits(unpatchify(patches, 2, 1), keep)
    assert torch.allclose(logits[:, ~others], changed[:, ~others], atol=1e-5)


def test_mp3_step_learns_positions_and_keeps_the_embedding_at_zero():
    method = mp3()
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=3e-3)
    x = torch.randn(16, 1, 16, 16)
    first = None
    for _ in range(15):
        out = method([x])
        first = first if first is not None else out["loss"].item()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["loss"].item() < first - 0.2 and 0 <= out["position_accuracy"].item() <= 1
    assert torch.all(method.backbone.pos_embed == 0)


def test_mp3_needs_mean_pooling():
    with pytest.raises(UsageError, match="pool=mean"):
        METHODS["mp3"](tiny_vit(pool="cls"), METHODS["mp3"].Args())


# ------------------------------------------------------------------------------------- fine-tuning
def test_layer_wise_lr_decay_groups():
    vit = tiny_vit()
    groups = param_groups(Classifier(vit, 10), 0.05, 0.5)
    scale_of = {id(p): (g["scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert scale_of[id(vit.patch_embed.weight)] == (0.5**3, 0.05)
    assert scale_of[id(vit.cls_token)] == (0.5**3, 0.0)
    assert scale_of[id(vit.blocks[0].attn.qkv.weight)] == (0.5**2, 0.05)
    assert scale_of[id(vit.blocks[1].attn.qkv.bias)] == (0.5, 0.0)
    assert scale_of[id(vit.norm.weight)] == (1.0, 0.0)
    resnet = build_backbone("resnet-small", {"channels": 1})
    assert {g["scale"] for g in param_groups(Classifier(resnet, 10), 0.05, 0.5)} == {1.0}


@pytest.mark.slow
def test_finetune_trains_a_copy_of_a_vit_and_scores_the_test_split():
    data = load_dataset("digits")
    torch.manual_seed(1)
    vit = tiny_vit(image_size=8, embed_dim=32, pool="mean")
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    spec = {"size": 8, "channels": 1, "mean": (0.3,), "std": (0.35,)}
    args = FinetuneArgs(epochs=6, batch_size=64, lr=2e-2, crop_scale=(0.6, 1.0))
    augment = MODALITY.finetune_views(spec, ViewConfig(flip_p=0.0), args)
    res = finetune(
        vit,
        data.train,
        data.train_labels,
        data.test,
        data.test_labels,
        10,
        MODALITY.eval_transform(spec),
        augment,
        seed=1,
        args=args,
    )
    assert res["settings"]["crop_scale"] == [0.6, 1.0] and res["settings"]["flip_p"] == 0.0
    assert res["top1"] > 0.4  # chance is 0.1; a ViT from scratch after 6 short epochs
    assert res["n_fit"] + res["n_held_out"] == len(data.train) and res["n_held_out"] == 144
    assert 1 <= res["best_epoch"] <= 6 and res["val_top1"] == pytest.approx(max(res["val_history"]), abs=1e-6)
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())  # the encoder is untouched


@pytest.mark.slow
def test_finetune_on_a_fraction_of_the_labels_keeps_the_class_balance():
    data = load_dataset("digits")
    vit = tiny_vit(image_size=8, embed_dim=32, pool="mean")
    spec = {"size": 8, "channels": 1, "mean": (0.3,), "std": (0.35,)}
    args = FinetuneArgs(epochs=1, batch_size=64, labels=0.2)
    augment = MODALITY.finetune_views(spec, ViewConfig(flip_p=0.0), args)
    res = finetune(
        vit,
        data.train,
        data.train_labels,
        data.test,
        data.test_labels,
        10,
        MODALITY.eval_transform(spec),
        augment,
        args=args,
    )
    per_class = torch.bincount(data.train_labels, minlength=10)
    assert res["n_fit"] + res["n_held_out"] == int(sum(round(0.2 * int(n)) for n in per_class))
    with pytest.raises(UsageError, match="labels is the fraction"):
        FinetuneArgs(labels=0.0)


# ------------------------------------------------------------------------------------ command line
def run_cli(capsys, *argv):
    from selfsup.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


SHORT = ("--epochs", "1", "--batch-size", "32", "--set", "data.subset=64", "--set", "augment.size=8")


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, extra",
    [
        ("mae-digits", ()),
        ("mp3-digits", ()),
        ("dino-vit-digits", ("--set", "method_args.n_local=2", "--set", "model.drop_path=0.1")),
    ],
)
def test_vit_methods_run_end_to_end_from_the_cli(tmp_path, capsys, recipe, extra):
    run = tmp_path / recipe
    code, out, err = run_cli(capsys, "train", recipe, *SHORT, *extra, "--out", str(run))
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["method"] == recipe.split("-digits")[0].replace("-vit", "")
    from selfsup.encoder import load_encoder

    encoder = load_encoder(run)
    assert isinstance(encoder, VisionTransformer) and encoder.patch_size == 2 and encoder.grid == 4
    assert encoder(torch.randn(2, 1, 8, 8)).shape == (2, 192)
    assert encoder.backbone_spec["options"]["drop_path"] == (0.1 if "model.drop_path=0.1" in extra else 0.0)


@pytest.mark.slow
def test_finetune_protocol_from_the_cli_on_a_resnet_run(tmp_path, capsys):
    run = tmp_path / "byol"
    code, _, err = run_cli(
        capsys,
        "train",
        "byol-digits",
        "--epochs",
        "1",
        "--set",
        "augment.size=8",
        "--set",
        "data.subset=256",
        "--out",
        str(run),
    )
    assert code == 0, err
    # a small labelled set keeps the ten fine-tuning epochs short
    data = load_dataset("digits")
    small = tmp_path / "small.npz"
    np.savez(
        small,
        x_train=data.train[:300, 0].numpy(),
        y_train=data.train_labels[:300].numpy(),
        x_test=data.test[:100, 0].numpy(),
        y_test=data.test_labels[:100].numpy(),
    )
    code, out, err = run_cli(capsys, "eval", str(run), "--data", f"npz:{small}", "--protocol", "finetune", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["protocols"] == ["finetune"] and 0 <= result["finetune_top1"] <= 1
    assert result["finetune"]["n_fit"] + result["finetune"]["n_held_out"] == 300
    assert result["finetune"]["settings"]["epochs"] == 10
    assert result["finetune"]["settings"]["flip_p"] == 0.0  # the run's own first view: digits never flip
    recorded = json.loads((run / "summary.json").read_text())["eval"][result["dataset"]]
    assert recorded["finetune_top1"] == result["finetune_top1"]

    # half of the labels, with the from-scratch baseline: same split sizes, one more headline number
    code, out, err = run_cli(
        capsys,
        "eval",
        str(run),
        "--data",
        f"npz:{small}",
        "--protocol",
        "finetune",
        "--json",
        "--finetune-set",
        "labels=0.5",
        "--finetune-set",
        "epochs=2",
        "--finetune-set",
        "random_init_baseline=true",
        "--finetune-set",
        "crop_scale=[0.5,1]",
    )
    assert code == 0, err
    result = json.loads(out)
    ft = result["finetune"]
    assert ft["n_fit"] + ft["n_held_out"] == 150 and ft["settings"]["labels"] == 0.5
    assert ft["settings"]["crop_scale"] == [0.5, 1.0]
    assert 0 <= result["finetune_top1_random_init"] <= 1 and len(ft["random_init"]["val_history"]) == 2
    code, out, err = run_cli(
        capsys, "eval", str(run), "--data", f"npz:{small}", "--protocol", "finetune", "--finetune-set", "epoch=2"
    )
    assert code == 2 and "unknown fine-tuning setting 'epoch'; choose one of: epochs" in err


@pytest.mark.parametrize(
    "given, match",
    [
        (["random_init_baseline=maybe"], "random_init_baseline expects bool, got 'maybe'"),
        (["labels=abc"], "labels expects float, got 'abc'"),
        (["epochs=2.5"], "epochs expects int, got 2.5"),
        (["labels"], "takes KEY=VALUE"),
        (["labels=1.5"], "labels is the fraction"),
        (["crop_scale=0.8"], r"crop_scale expects a \[low, high\] pair"),
        (["crop_scale=[0.9,0.2]"], "crop_scale must be"),
    ],
)
def test_bad_finetune_settings_are_one_line_usage_errors(given, match):
    from selfsup.evaluate.finetune import finetune_settings

    with pytest.raises(UsageError, match=match):
        finetune_settings(given)
    assert finetune_settings(
        ["labels=0.1", "random_init_baseline=true", "epochs=3", "lr=2e-3", "crop_scale=[0.8,1]"]
    ) == FinetuneArgs(labels=0.1, random_init_baseline=True, epochs=3, lr=0.002, crop_scale=(0.8, 1.0))
