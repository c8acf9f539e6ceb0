"""GMML, SiT and I-JEPA: their masks, what each network sees, what the losses look at, and what
trains, on tiny vision transformers; then every method from the command line on digits."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.backbones import build_backbone
from selfsup.backbones.vit import VisionTransformer, patchify
from selfsup.errors import UsageError
from selfsup.methods import METHODS
from selfsup.methods.gmml import masked_l1, parse_blocks
from selfsup.methods.parts.blockmask import block_masks, components, multiblock_masks
from selfsup.methods.parts.masking import random_keep
from selfsup.methods.parts.teacher import linear_tau


def tiny_vit(**kw):
    args = dict(in_channels=1, image_size=16, patch_size=2, embed_dim=32, depth=4, num_heads=4)
    args.update(kw)
    return VisionTransformer(**args)


def gmml(**kw):
    torch.manual_seed(0)
    return METHODS["gmml"](tiny_vit(), METHODS["gmml"].Args(**kw))


def sit(**kw):
    torch.manual_seed(0)
    cls = METHODS["sit"]
    return cls(tiny_vit(), cls.Args(proj_hidden=32, proj_dim=16, **kw))


def ijepa(**kw):
    torch.manual_seed(0)
    cls = METHODS["ijepa"]
    return cls(tiny_vit(), cls.Args(pred_depth=2, pred_dim=16, **kw))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def record(method, name):
    """Wrap ``method.<name>`` to keep what it returns (the real function still runs)."""
    calls = []
    real = getattr(method, name)

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out)
        return out

    setattr(method, name, wrapper)
    return calls


def inputs_of(module):
    seen = []
    module.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    return seen


# --------------------------------------------------------------------------------------- GMML masks


@pytest.mark.parametrize("grid", [4, 8, 16])
@pytest.mark.parametrize("coverage", [0.3, 0.5, 0.75])
def test_block_masks_are_connected_groups_with_the_requested_coverage(grid, coverage):
    torch.manual_seed(grid)
    length = grid * grid
    masks = block_masks(64, grid, coverage, max_area=max(2, round((0.3 * grid) ** 2)))
    assert masks.shape == (64, length) and masks.dtype == torch.bool
    assert (masks.sum(1) == round(coverage * length)).all()
    for m in masks:
        sizes = components(m.view(grid, grid).numpy())
        assert sum(sizes) == m.sum() and min(sizes) >= 2  # groups of connected tokens, no lone token
    assert len({tuple(m.tolist()) for m in masks}) > 32  # a fresh mask per sample


def test_the_connectivity_check_rejects_scattered_masks():
    # The same check on MAE's uniformly random masks finds lone tokens: it can fail.
    torch.manual_seed(0)
    _, mask = random_keep(64, 64, 0.5)
    assert any(min(components(m.view(8, 8).bool().numpy())) == 1 for m in mask)


def test_flood_fill_counts_four_connected_groups():
    grid = np.array([[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1], [1, 0, 1, 1]], dtype=bool)
    assert sorted(components(grid)) == [1, 3, 4]


def test_block_masks_draw_each_coverage_from_a_range():
    torch.manual_seed(0)
    masks = block_masks(200, 8, (0.5, 0.75))
    counts = masks.sum(1)
    assert counts.min() >= 32 and counts.max() <= 48 and len(counts.unique()) > 5


# ------------------------------------------------------------------------------------- I-JEPA masks


@pytest.mark.parametrize("grid, num_targets", [(4, 2), (8, 4), (16, 4)])
def test_ijepa_target_blocks_are_rectangles_disjoint_from_the_context(grid, num_targets):
    torch.manual_seed(grid)
    n, length = 64, grid * grid
    context, targets = multiblock_masks(n, grid, num_targets)
    assert context.ndim == 2 and targets.shape[:2] == (n, num_targets)
    in_context = torch.zeros(n, length, dtype=torch.bool).scatter_(1, context, True)
    assert not in_context.gather(1, targets.flatten(1)).any()  # disjoint from every target
    assert (in_context.sum(1) == context.shape[1]).all()  # no index twice
    assert context.shape[1] >= max(2, round(0.05 * length))  # min_keep
    for blocks in targets:
        for block in blocks:
            rows, cols = (block // grid).unique(), (block % grid).unique()
            assert len(rows) * len(cols) == len(block)  # a full rectangle ...
            assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
    scale = targets.shape[2] / length
    assert 0.05 <= scale <= 0.3  # 15-20% before rounding to whole tokens


# ---------------------------------------------------------------------------------------------- GMML


def test_gmml_corrupts_only_the_masked_tokens_with_noise_zeros_or_another_image():
    x = torch.randn(6, 1, 16, 16)
    for corruption in ("zeros", "noise"):
        method = gmml(corruption=corruption, replace_p=0.0)
        corrupted, mask = method.corrupt(x)
        a, b = patchify(x, 2), patchify(corrupted, 2)
        assert torch.equal(a[~mask], b[~mask])
        assert (b[mask] == 0).all() if corruption == "zeros" else not torch.equal(a[mask], b[mask])
        frac = mask.float().mean(1)
        assert (frac >= 0.5 - 1e-6).all() and (frac <= 0.75 + 1e-6).all()
    method = gmml(replace_p=1.0, replace_ratio=0.3)
    corrupted, mask = method.corrupt(x)
    a, b = patchify(x, 2), patchify(corrupted, 2)
    assert (mask.sum(1) == round(0.3 * 64)).all()
    for i in range(6):  # the same positions of another image of the batch
        others = [j for j in range(6) if j != i and torch.equal(b[i][mask[i]], a[j][mask[i]])]
        assert others and torch.equal(a[i][~mask[i]], b[i][~mask[i]])


def test_gmml_loss_looks_only_at_the_corrupted_regions():
    pred, target = torch.randn(3, 64, 4), torch.randn(3, 64, 4)
    mask = torch.rand(3, 64) < 0.5
    changed_outside = pred.clone()
    changed_outside[~mask] += 10.0
    assert masked_l1(pred, target, mask) == pytest.approx(masked_l1(changed_outside, target, mask).item())
    assert masked_l1(pred, target, mask).item() == pytest.approx((pred - target).abs()[mask].mean().item(), rel=1e-5)

    method = gmml()
    masks = record(method, "corrupt")
    outputs = []

    def keep_output(mod, args, out):
        out.retain_grad()
        outputs.append(out)

    method.head.register_forward_hook(keep_output)
    method([torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)])["loss"].backward()
    mask = torch.cat([m for _, m in masks])
    grad = outputs[0].grad.abs().sum(-1)
    assert (grad[~mask] == 0).all() and (grad[mask] > 0).all()


def test_gmml_reconstructs_from_the_mean_of_the_chosen_blocks():
    assert parse_blocks("auto", 12) == (6, 8, 10, 12) and parse_blocks("last", 4) == (4,)
    with pytest.raises(UsageError):
        parse_blocks("0-5", 4)
    method = gmml(recons_blocks="2-4")
    vit, x = method.backbone, torch.randn(2, 1, 16, 16)
    seen = []
    for i in (1, 3):
        vit.blocks[i].register_forward_hook(lambda mod, args, out: seen.append(out))
    out, rec = method.encode_for_reconstruction(x)
    assert torch.allclose(rec, vit.norm((seen[0] + seen[1]) / 2)[:, 1:], atol=1e-6)
    assert torch.allclose(out, vit.encode(vit.embed(x)), atol=1e-6)


def test_gmml_step_trains_the_encoder_and_head():
    method = gmml()
    before = snapshot(method)
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    method([torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)])["loss"].backward()
    opt.step()
    moved = changed(before, method)
    assert {k for k in before if k != "backbone.pos_embed"} == moved  # the sin-cos buffer stays


def test_gmml_visualize_is_seeded_and_keeps_the_clean_tokens():
    method = gmml()
    x = torch.randn(3, 1, 16, 16)
    a, b = method.visualize(x, seed=1), method.visualize(x, seed=1)
    assert set(a) == {"masked", "reconstruction", "mask"} and method.training
    assert torch.equal(a["masked"], b["masked"]) and a["reconstruction"].shape == x.shape
    keep = a["mask"].expand_as(x) == 0
    assert torch.equal(a["masked"][keep], x[keep]) and not torch.equal(a["masked"], x)


def test_masked_methods_need_a_vision_transformer():
    for name in ("gmml", "sit", "ijepa"):
        with pytest.raises(UsageError, match="vision transformer"):
            METHODS[name](build_backbone("resnet-small", {"channels": 1}), METHODS[name].Args())


# ----------------------------------------------------------------------------------------------- SiT


def test_sit_student_sees_corrupted_views_and_the_teacher_the_clean_ones():
    method = sit()
    views = [torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)]
    student_in = inputs_of(method.backbone.blocks[0])
    teacher_in = inputs_of(method.teacher.net[0].blocks[0])
    corrupted = record(method, "corrupt")
    out = method(views)
    assert {"contrastive", "reconstruction"} <= set(out)
    vit, tvit = method.backbone, method.teacher.net[0]
    clean_tokens = tvit.embed(torch.cat(views))
    assert torch.allclose(teacher_in[0][:, 1:], clean_tokens, atol=1e-6)
    noisy = vit.embed(torch.cat([c for c, _ in corrupted]))
    assert torch.allclose(student_in[0][:, 1:], noisy, atol=1e-6)
    assert not torch.allclose(student_in[0][:, 1:], clean_tokens, atol=1e-3)


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_sit_step_trains_the_student_and_not_the_teacher_until_the_momentum_update():
    method = sit()
    teacher_before, before = params(method.teacher), snapshot(method)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    method([torch.randn(8, 1, 16, 16), torch.randn(8, 1, 16, 16)])["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    opt.step()
    moved = changed(before, method)
    assert any(k.startswith("projector.") for k in moved) and any(k.startswith("head.") for k in moved)
    assert any(k.startswith("backbone.blocks.") for k in moved)
    # (the teacher's BatchNorm statistics follow its batches, as BYOL's target; its weights do not)
    assert all(torch.equal(teacher_before[k], v) for k, v in method.teacher.named_parameters())
    method.after_step(1, 10)
    assert not all(torch.equal(teacher_before[k], v) for k, v in method.teacher.named_parameters())
    assert method.encoder is method.backbone


# -------------------------------------------------------------------------------------------- I-JEPA


def test_ijepa_context_encoder_sees_only_the_context_tokens():
    method = ijepa()
    x = torch.randn(5, 1, 16, 16)
    masks = record(method, "masks")
    context_in = inputs_of(method.backbone.blocks[0])
    target_in = inputs_of(method.target.net.blocks[0])
    method([x])
    ((context_idx, target_idx),) = masks
    vit = method.backbone
    expected = torch.gather(vit.embed(x), 1, context_idx[..., None].expand(-1, -1, vit.embed_dim))
    assert context_in[0].shape == (5, 1 + context_idx.shape[1], vit.embed_dim)
    assert torch.allclose(context_in[0][:, 1:], expected, atol=1e-6)
    assert target_in[0].shape == (5, 1 + vit.num_patches, vit.embed_dim)  # the target encoder sees all
    assert context_idx.shape[1] < vit.num_patches - target_idx.shape[2]


def test_ijepa_loss_is_the_squared_error_to_layer_normalised_target_tokens():
    method = ijepa()
    x = torch.randn(4, 1, 16, 16)
    masks = record(method, "masks")
    preds = []
    method.predictor.register_forward_hook(lambda mod, args, out: preds.append(out))
    loss = method([x])["loss"]
    ((_, target_idx),) = masks
    h = method.target.net.encode(method.target.net.embed(x))[:, 1:]
    h = F.layer_norm(h, (h.shape[-1],))
    targets = torch.stack([h[i][target_idx[i]] for i in range(4)])
    assert loss.item() == pytest.approx(((preds[0] - targets) ** 2).mean().item(), rel=1e-5)


def test_ijepa_ema_target_receives_no_gradient_and_follows_the_linear_momentum():
    assert linear_tau(0, 100, 0.996) == pytest.approx(0.996)
    assert linear_tau(50, 100, 0.996) == pytest.approx(0.998)
    assert linear_tau(100, 100, 0.996) == pytest.approx(1.0)
    method = ijepa()
    target_before, before = snapshot(method.target), snapshot(method)
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-2)
    method([torch.randn(8, 1, 16, 16)])["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in method.target.parameters())
    opt.step()
    moved = changed(before, method)
    assert any(k.startswith("predictor.blocks.") for k in moved) and "predictor.mask_token" in moved
    assert any(k.startswith("backbone.blocks.") for k in moved) and "backbone.patch_embed.weight" in moved
    assert "predictor.pos_embed" not in moved and not changed(target_before, method.target)
    online = method.backbone.patch_embed.weight.detach().clone()
    old = target_before["net.patch_embed.weight"]
    info = method.after_step(1, 10)
    tau = info["tau"]
    assert tau == pytest.approx(0.996)
    assert torch.allclose(method.target.net.patch_embed.weight, tau * old + (1 - tau) * online, atol=1e-6)
    assert method.encoder is method.target.net


# ------------------------------------------------------------------------------------ command line

SHORT = ("--epochs", "1", "--batch-size", "32", "--set", "data.subset=64", "--set", "augment.size=8")


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, extra",
    [
        ("gmml-digits", ()),
        ("sit-digits", ()),
        ("ijepa-digits", ("--set", "method_args.num_targets=2")),  # 4x4 tokens at 8 px: two targets fit
    ],
)
def test_masked_methods_run_end_to_end_from_the_cli(tmp_path, capsys, recipe, extra):
    from selfsup.cli import main
    from selfsup.encoder import load_encoder

    run = tmp_path / recipe
    code = main(["train", recipe, *SHORT, *extra, "--out", str(run)])
    _, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["method"] == recipe.split("-")[0]
    assert 0 < summary["knn_top1"] <= 1
    encoder = load_encoder(run)
    assert isinstance(encoder, VisionTransformer) and encoder.grid == 4
    assert encoder(torch.randn(2, 1, 8, 8)).shape == (2, 192)
