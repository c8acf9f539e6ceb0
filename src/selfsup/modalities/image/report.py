"""The report's pictures of image runs: augmented views from the run's own pipeline, and for
masked-modelling and vision-transformer runs, reconstructions and the class token's attention.

Images are a seeded handful from across a split. For methods with a ``visualize(x)`` (MAE, GMML,
SiT): original / masked / reconstructed test images from the method rebuilt from the run's last
checkpoint; for ViT encoders, the class token's attention over the patches in the last block, per
head, on a few test images (DINO's maps, Caron et al. 2021, Fig. 1).
"""

from __future__ import annotations

import torch

from ...backbones import backbone_for, family_of
from ...data.base import unpack
from ...methods import METHODS, build_method
from ...training.checkpoint import load as load_checkpoint
from .views import ViewConfig, ViewRecipe

RECONSTRUCTED = 8  # test images shown original / masked / reconstructed
ATTENDED = 6  # test images shown with their class-token attention maps


def pictures(ctx) -> dict[str, str]:
    out = {}
    if ctx.data is not None:
        out["views"] = _views(ctx)
    out.update(_masked_vit(ctx))
    return out


def _spread(n: int, k: int) -> torch.Tensor:
    """``min(n, k)`` rows from across a split of ``n``, seeded (a folder's first images share a class)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[: min(n, k)].sort().values


def _show(ax, img, title=None, **kw) -> None:
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, **kw)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=7, loc="left")


def _views(ctx) -> str:
    """Eight training images and the method's views of them (both from a fixed seed)."""
    cfg, plt = ctx.cfg, ctx.plt
    spec = ctx.encoder.input_spec if ctx.encoder is not None else None
    channels = cfg.augment.channels
    mean = spec["mean"] if spec else [0.5] * channels
    std = spec["std"] if spec else [0.25] * channels
    recipe = ViewRecipe(cfg.view_configs(), channels, mean, std)
    shown = ctx.data.rows("train")[_spread(len(ctx.data.train), 8)]
    views = recipe(shown, torch.Generator().manual_seed(0))
    sample, extras = unpack(shown)
    # A prepared photo is stored squeezed into a square; it is drawn at its own aspect ratio.
    aspect = (extras["source_size"][:, 0] / extras["source_size"][:, 1]).tolist() if extras else [1.0] * len(sample)
    fig, axes = plt.subplots(len(views) + 1, len(sample), figsize=(1.3 * len(sample), 1.3 * (len(views) + 1)))
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    rows = [sample.float() / 255] + [(v * s + m).clamp(0, 1) for v in views]
    for r, row in enumerate(rows):
        for c in range(len(sample)):
            img = row[c].permute(1, 2, 0).numpy()
            axes[r][c].imshow(
                img.squeeze(-1) if img.shape[-1] == 1 else img,
                cmap="gray",
                vmin=0,
                vmax=1,
                aspect=aspect[c] if r == 0 else "equal",
            )
            axes[r][c].axis("off")
        axes[r][0].set_title("original" if r == 0 else f"view {r}", fontsize=7, loc="left")
    return ctx.png(fig)


def _masked_vit(ctx) -> dict:
    """Reconstructions (methods with ``visualize``) and class-token attention maps (ViT encoders)
    on the first test images; each part says in ``ctx.skipped`` why it is missing."""
    out, cfg, plt, device, name = {}, ctx.cfg, ctx.plt, ctx.device, ctx.name
    method_cls = METHODS[cfg.method]
    wants_recon = hasattr(method_cls, "visualize")
    wants_attention = family_of(cfg.model.backbone).name == "vit"
    if not wants_recon:
        ctx.skipped.append(f"{name}: no reconstructions ({cfg.method} does not reconstruct images)")
    if not wants_attention:
        ctx.skipped.append(f"{name}: no attention maps ({cfg.model.backbone} is not a vision transformer)")
    if not (wants_recon or wants_attention):
        return out
    if ctx.encoder is None:
        ctx.skipped.append(f"{name}: no reconstructions or attention maps (no encoder: unfinished run)")
        return out
    if ctx.data is None:
        return out
    data = ctx.data
    images, split = (data.test, "test") if data.test is not None else (data.train, "train")
    spec = ctx.encoder.input_spec
    transform = ViewRecipe([ViewConfig(size=spec["size"])], spec["channels"], spec["mean"], spec["std"]).eval_transform
    x = transform(images[_spread(len(images), max(RECONSTRUCTED, ATTENDED))].to(device))
    mean = torch.tensor(spec["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], device=device).view(1, -1, 1, 1)

    def pixels(t: torch.Tensor):  # normalised (N, C, H, W) -> displayable (N, H, W, C) in [0, 1]
        return (t.float() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    if wants_recon and not ctx.folder.checkpoint.is_file():
        ctx.skipped.append(f"{name}: no reconstructions (no checkpoints/last.pt to rebuild the method from)")
    elif wants_recon:
        method = build_method(cfg, backbone_for(cfg, spec))
        method.load_state_dict(load_checkpoint(ctx.folder.checkpoint)["method"])
        method.to(device).eval()
        shown = x[:RECONSTRUCTED]
        vis = method.visualize(shown)
        rows = [
            ("original", pixels(shown)),
            ("masked", pixels(vis["masked"])),
            ("reconstruction", pixels(vis["reconstruction"])),
        ]
        fig, axes = plt.subplots(len(rows), len(shown), figsize=(1.3 * len(shown), 1.3 * len(rows)), squeeze=False)
        for r, (title, row) in enumerate(rows):
            for c in range(len(shown)):
                _show(axes[r][c], row[c], title if c == 0 else None, cmap="gray", vmin=0, vmax=1)
        fig.suptitle(f"{cfg.method}: {split} images, the method's masking (seeded) and its output", fontsize=8)
        out["reconstructions"] = ctx.png(fig)
    if wants_attention:
        shown = x[:ATTENDED]
        maps = ctx.encoder.cls_attention(shown).float().cpu()  # (N, heads, grid, grid)
        heads = maps.shape[1]
        img = pixels(shown)
        fig, axes = plt.subplots(len(shown), heads + 1, figsize=(1.3 * (heads + 1), 1.3 * len(shown)), squeeze=False)
        for r in range(len(shown)):
            _show(axes[r][0], img[r], "image" if r == 0 else None, cmap="gray", vmin=0, vmax=1)
            for h in range(heads):
                _show(axes[r][h + 1], maps[r, h].numpy(), f"head {h + 1}" if r == 0 else None, cmap="inferno")
        fig.suptitle(
            f"class-token attention over the {maps.shape[-1]}x{maps.shape[-1]} patches, last block ({split} images)",
            fontsize=8,
        )
        out["attention"] = ctx.png(fig)
    return out
