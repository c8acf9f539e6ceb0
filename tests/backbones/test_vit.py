"""The vision transformer backbone: patches, position embeddings, token dropping, presets."""

import math

import pytest
import torch
from torch import nn

from selfsup.backbones import build_backbone, rebuild
from selfsup.backbones.vit import VisionTransformer, patchify, sincos_2d, unpatchify
from selfsup.errors import UsageError


def tiny(**kw):
    torch.manual_seed(0)
    args = dict(in_channels=3, image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4)
    args.update(kw)
    return VisionTransformer(**args).eval()


@pytest.mark.parametrize("c, size, p", [(1, 16, 2), (3, 32, 4), (3, 12, 3)])
def test_patchify_unpatchify_round_trip(c, size, p):
    x = torch.randn(2, c, size, size)
    patches = patchify(x, p)
    assert patches.shape == (2, (size // p) ** 2, p * p * c)
    assert torch.equal(unpatchify(patches, p, c), x)


def test_patches_are_row_major_and_hold_their_own_pixels():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    patches = patchify(x, 4)  # a 2x2 grid
    # patch 1 is the top-right block, flattened as (row, column, channel)
    block = x[:, :, 0:4, 4:8].permute(0, 2, 3, 1).reshape(2, -1)
    assert torch.equal(patches[:, 1], block)
    assert torch.equal(patches[:, 2], x[:, :, 4:8, 0:4].permute(0, 2, 3, 1).reshape(2, -1))


def test_sincos_embedding_codes_column_then_row():
    grid, dim = 4, 16
    emb = sincos_2d(grid, dim)
    assert emb.shape == (grid * grid, dim)
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    for index in (0, 5, 11):
        r, c = divmod(index, grid)
        want = torch.cat([torch.sin(c * omega), torch.cos(c * omega), torch.sin(r * omega), torch.cos(r * omega)])
        assert torch.allclose(emb[index].double(), want, atol=1e-6)
    assert len({tuple(row.tolist()) for row in emb}) == grid * grid  # every position distinct


def test_encode_with_keep_runs_the_blocks_on_the_kept_tokens_only():
    vit = tiny()
    seen = []
    vit.blocks[0].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].shape[1]))
    x = torch.randn(3, 3, 16, 16)
    tokens = vit.embed(x)
    keep = torch.stack([torch.randperm(16)[:5] for _ in range(3)])
    out = vit.encode(tokens, keep)
    assert out.shape == (3, 6, 32) and seen == [6]  # class token + 5 kept tokens
    # the same as encoding the gathered tokens directly: the others never enter
    gathered = torch.stack([tokens[i, keep[i]] for i in range(3)])
    assert torch.allclose(out, vit.encode(gathered), atol=1e-6)
    assert vit.encode(tokens, keep, cls=False).shape == (3, 5, 32)


def test_forward_shapes_pooling_and_position_embedding_kinds():
    x = torch.randn(2, 3, 16, 16)
    cls = tiny(pool="cls")
    mean = tiny(pool="mean")
    assert cls(x).shape == (2, 32) and cls.feature_dim == 32 and cls.num_patches == 16 and cls.grid == 4
    tokens = mean.encode(mean.embed(x))
    assert torch.allclose(mean(x), tokens[:, 1:].mean(1), atol=1e-6)
    assert torch.allclose(cls(x), cls.encode(cls.embed(x))[:, 0], atol=1e-6)
    assert isinstance(tiny(pos_embed="learned").pos_embed, nn.Parameter)
    sincos = tiny(pos_embed="sincos")
    assert not isinstance(sincos.pos_embed, nn.Parameter) and "pos_embed" in dict(sincos.named_buffers())
    assert torch.allclose(
        sincos.embed(x) - sincos.embed(x, add_pos=False), sincos.pos_embed.expand(2, -1, -1), atol=1e-5
    )


def test_smaller_views_get_a_resized_position_embedding():
    vit = tiny()
    assert vit(torch.randn(2, 3, 8, 8)).shape == (2, 32)  # a 2x2 grid, as a multi-crop local view
    assert torch.equal(vit.pos_embed_for(4, 4), vit.pos_embed)


def test_presets_spec_rebuild_and_default_patch_size():
    model = build_backbone("vit-tiny", {"channels": 1, "size": 16}, {"pool": "mean", "pos_embed": "learned"})
    assert model.patch_size == 2 and model.grid == 8 and model.embed_dim == 192 and len(model.blocks) == 12
    assert model.num_heads == 3 and model.in_channels == 1
    small = build_backbone("vit-small", {"channels": 3, "size": 32})
    assert small.patch_size == 4 and small.embed_dim == 384
    assert model.spec == {
        "name": "vit-tiny",
        "options": {"patch_size": 2, "pool": "mean", "pos_embed": "learned", "drop_path": 0.0},
    }
    again = rebuild(model.spec, {"channels": 1, "size": 16})
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(model.eval()(x), again.eval()(x))


def test_initialisation_follows_mae():
    vit = tiny()
    norms = [m for m in vit.modules() if isinstance(m, nn.LayerNorm)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    qkv = vit.blocks[0].attn.qkv
    bound = math.sqrt(6 / (qkv.in_features + qkv.out_features))  # Xavier-uniform
    assert qkv.weight.abs().max() <= bound and torch.all(qkv.bias == 0)
    assert 0.005 < vit.cls_token.std() < 0.04


def test_cls_attention_is_the_class_tokens_softmax_over_patches():
    vit = tiny()
    x = torch.randn(2, 3, 16, 16)
    attn = vit.cls_attention(x)
    assert attn.shape == (2, 4, 4, 4)
    total = attn.sum(dim=(2, 3))  # the rest of the mass is on the class token itself
    assert torch.all(attn >= 0) and torch.all(total <= 1 + 1e-5) and torch.all(total > 0)


def test_attention_mask_hides_masked_keys():
    vit = tiny()
    tokens = vit.embed(torch.randn(1, 3, 16, 16))
    allowed = torch.zeros(1, 1, 1, 16, dtype=torch.bool)
    allowed[..., :8] = True
    out = vit.encode(tokens, cls=False, attn_mask=allowed)
    changed = tokens.clone()
    changed[:, 8:] += torch.randn_like(changed[:, 8:])  # only tokens that are never keys change
    out2 = vit.encode(changed, cls=False, attn_mask=allowed)
    assert torch.allclose(out[:, :8], out2[:, :8], atol=1e-5)
    assert not torch.allclose(out[:, 8:], out2[:, 8:], atol=1e-3)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(image_size=32, patch_size=5), "patch size 5 does not divide the image size 32"),
        (dict(image_size=16, patch_size=0, pool="max"), "unknown ViT pool 'max'"),
        (dict(image_size=16, patch_size=0, pos_embed="rope"), "unknown ViT pos_embed 'rope'"),
    ],
)
def test_bad_settings_are_one_line_usage_errors(kw, match):
    with pytest.raises(UsageError, match=match) as info:
        build_backbone("vit-tiny", {"channels": 3, "size": kw.pop("image_size")}, kw)
    assert "\n" not in str(info.value)


def test_unknown_preset_names_the_choices():
    with pytest.raises(UsageError, match="vit-tiny"):
        build_backbone("vit-tny", {"channels": 3, "size": 32})


def test_attention_weights_are_the_ones_scaled_dot_product_attention_uses():
    vit = tiny()
    attn = vit.blocks[-1].attn
    x = torch.randn(2, 5, 32)
    weights = attn.weights(x)  # (2, heads, 5, 5)
    _, _, v = attn._qkv(x)
    mixed = (weights @ v).transpose(1, 2).reshape(2, 5, 32)
    assert torch.allclose(attn.proj(mixed), attn(x), atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 5), atol=1e-5)


def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    from selfsup.backbones.vit import drop_path

    x = torch.randn(4000, 5, 8)
    assert drop_path(x, 0.25, training=False) is x and drop_path(x, 0.0, training=True) is x
    torch.manual_seed(0)
    y = drop_path(x, 0.25, training=True)
    kept = (y != 0).flatten(1).any(dim=1)
    assert torch.allclose(y[kept], x[kept] / 0.75) and bool((y[~kept] == 0).all())  # per sample, all or nothing
    assert abs(kept.float().mean().item() - 0.75) < 0.03


@pytest.mark.slow
def test_stochastic_depth_rises_over_the_blocks_is_off_in_eval_and_off_in_teachers():
    from selfsup.methods.parts.teacher import MomentumTeacher

    torch.manual_seed(0)
    small = {"channels": 1, "size": 8}
    vit = build_backbone("vit-tiny", small, {"patch_size": 2, "drop_path": 0.2})
    rates = [b.drop_path for b in vit.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)
    assert vit.spec["options"]["drop_path"] == 0.2 and rebuild(vit.spec, small).blocks[-1].drop_path == pytest.approx(
        0.2
    )
    plain = build_backbone("vit-tiny", small, {"patch_size": 2})
    plain.load_state_dict(vit.state_dict())
    x = torch.randn(16, 1, 8, 8)
    vit.train()
    assert not torch.allclose(vit(x), vit(x))  # a fresh draw of dropped branches each call
    vit.eval(), plain.eval()
    assert torch.equal(vit(x), plain(x))  # evaluation keeps every branch, unscaled
    teacher = MomentumTeacher(vit.train())
    assert all(b.drop_path == 0.0 for b in teacher.net.blocks) and vit.blocks[-1].drop_path == pytest.approx(0.2)
    with pytest.raises(UsageError, match="drop_path"):
        build_backbone("vit-tiny", {"channels": 3, "size": 32}, {"drop_path": 1.0})
