"""``layers``: the kNN and the linear probe on the backbone's output and on the output of each layer
of the method's projection head (and of its predictor, where it has one), beside the raw-input
baseline: which layer of the trained network holds the best representation for these labels.

The question of Xue, Gan, Ni, Joshi & Mirzasoleiman 2024, "Investigating the Benefits of
Projection Head for Representation Learning" (ICLR 2024, arXiv:2403.11391): training weights the
input's features more and more unequally the deeper the layer, so a layer below the loss (usually
the backbone's output, the representation that is kept) can hold features that the layers the loss
sees have dropped, and which layer serves a downstream task best depends on the data and the
augmentations. This protocol measures it for one run instead of assuming it.

What is probed, for a method with a ``projector`` (an ``nn.Sequential``):

* ``backbone``: the online backbone's output (what ``projector`` is fed);
* ``projector.i``: the output of the projector's i-th block, a block being a ``Linear`` and what
  follows it up to the next ``Linear`` (Linear-BatchNorm-ReLU, and the last Linear with its output
  BatchNorm if the method has one);
* ``predictor.i``: the same for the predictor (BYOL, SimSiam, MoCo v3, NNCLR, MYOW), applied to the
  projector's output as in training: the rest of the online branch.

The exported encoder holds the backbone alone, so the method is rebuilt from the run's
``checkpoints/last.pt`` (:func:`selfsup.methods.build_method`, weights loaded, eval mode: BatchNorm
uses its running statistics). Every layer comes from that one checkpoint; where the exported encoder
is a teacher (DINO or SiT with ``eval_teacher``), the layers are the online network's and the result
says so. The projector's input is checked against the method's own ``projection`` on the first
test samples; a method that feeds its projector something else is refused.

Features are computed a chunk at a time and a layer at a time (only the current layer's features
of both splits are held). Per layer: the weighted kNN with the run's ``eval.knn_k`` and
``eval.knn_t``, the linear probe of the ``linear`` protocol (weight decay chosen on 10% of the
training split), and the uniformity (Wang & Isola 2020, on a seeded sample of at most 2048 test
features) and tolerance (Wang & Liu 2021, all test features) of the L2-normalised test features.
The raw-input baseline is computed once. Not part of ``all``: a linear probe per layer, on hidden
layers up to 4096-d wide in the shipped recipes, costs several times the ``linear`` protocol.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones import backbone_for
from ...errors import UsageError
from ...methods import build_method
from ...runs import RunFolder
from ...training.checkpoint import load as load_checkpoint
from ..diagnostics import geometry
from ..features import extract_features, raw_features
from ..knn import knn_top1
from ..linear import linear_probe
from .base import EvalContext, Protocol, Row

UNIFORMITY_SAMPLES = 2048  # test features the uniformity is computed on (it is quadratic in their number)


class Layers(Protocol):
    name = "layers"
    description = "kNN and linear probe on the backbone and each projector/predictor layer (needs the checkpoint)"
    order = 60
    frozen = False  # not in "all": a linear probe per layer

    def run(self, ctx: EvalContext) -> dict:
        method, step = rebuild_method(ctx)
        data, device, e = ctx.run.dataset, ctx.run.device, ctx.cfg.eval
        transform = ctx.run.modality.eval_transform(ctx.run.encoder.input_spec)
        blocks = head_blocks(method)
        with torch.no_grad():
            first = transform(data.test[: min(len(data.test), 64)].to(device))
            _check_projector_input(method, blocks, first.to(next(method.parameters()).dtype))

        splits = {"train": data.train, "test": data.test}
        feats = {s: extract_features(method.backbone, v, transform, e.batch_size, device) for s, v in splits.items()}
        layers = [{"name": "backbone", "ops": type(method.backbone).__name__, "dim": feats["test"].shape[1]}]
        layers[0].update(measure(ctx, feats))
        for name, ops, block in blocks:
            feats = {s: _apply(block, f, e.batch_size) for s, f in feats.items()}
            layers.append({"name": name, "ops": ops, "dim": feats["test"].shape[1], **measure(ctx, feats)})
        del feats

        raw = _raw_baseline(ctx, splits)
        result = {}
        best = max(layers, key=lambda r: r["linear_top1"])
        result["layers_best"] = best["name"]
        ctx.headline(result, "layers_best_linear_top1", best["linear_top1"], raw and raw["linear_top1"])
        details = {"checkpoint_step": step, "knn": {"k": e.knn_k, "t": e.knn_t}, "layers": layers}
        if method.encoder is not method.backbone:
            details["note"] = "the exported encoder is the teacher; these layers are the online network's"
        if raw:
            details["raw"] = raw
        result["layers"] = details
        return result

    def rows(self, r: dict) -> list[Row]:
        d = r["layers"]
        raw = d.get("raw") or {}
        return [
            Row(f"{layer['name']} {layer['ops']} {layer['dim']}-d", measure, layer.get(key), raw.get(key))
            for layer in d["layers"]
            for measure, key in MEASURES
        ]


MEASURES = (
    ("kNN top-1", "knn_top1"),
    ("linear top-1", "linear_top1"),
    ("uniformity", "uniformity"),
    ("tolerance", "tolerance"),
)


def rebuild_method(ctx: EvalContext) -> tuple[nn.Module, int | None]:
    """The run's method with the weights of its last checkpoint, on the evaluation device, in eval
    mode, and the checkpoint's global step; a one-line UsageError when that cannot be done."""
    cfg = ctx.cfg
    run_dir = getattr(ctx.run, "run_dir", None)
    if run_dir is None:
        raise UsageError("the layers protocol needs the run folder: evaluate a run folder (selfsup eval RUN_DIR)")
    folder = RunFolder(run_dir)
    if not folder.checkpoint.is_file():
        raise UsageError(
            f"{folder.checkpoint} is missing: the layers protocol rebuilds {cfg.method}'s projector from the "
            "run's checkpoint (the exported encoder holds the backbone only)"
        )
    method = build_method(cfg, backbone_for(cfg, ctx.run.encoder.input_spec))
    if not isinstance(getattr(method, "projector", None), nn.Module):
        raise UsageError(
            f"{cfg.method} has no projection head (projector): the layers protocol probes the layers of one; "
            "for its backbone alone use --protocol knn,linear"
        )
    ckpt = load_checkpoint(folder.checkpoint)
    try:
        method.load_state_dict(ckpt["method"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UsageError(f"{folder.checkpoint} does not fit the run's {cfg.method} ({first})") from None
    return method.to(ctx.run.device).eval(), ckpt.get("global_step")


def head_blocks(method: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """``(name, ops, block)`` of each block of the projector, then of the predictor when the method
    has one: a block starts at each ``Linear`` of an ``nn.Sequential`` head (a head of another
    kind is one block)."""
    out = []
    for head_name in ("projector", "predictor"):
        head = getattr(method, head_name, None)
        if head is None or isinstance(head, nn.Identity):
            continue
        groups: list[list[nn.Module]] = []
        for module in head if isinstance(head, nn.Sequential) else [head]:
            if not groups or (isinstance(module, nn.Linear) and groups[-1]):
                groups.append([])
            groups[-1].append(module)
        for i, group in enumerate(groups, 1):
            ops = "-".join(_short(m) for m in group)
            out.append((f"{head_name}.{i}", ops, nn.Sequential(*group)))
    return out


def _short(module: nn.Module) -> str:
    name = type(module).__name__
    return "BN" if "BatchNorm" in name else name


def _check_projector_input(method: nn.Module, blocks, x: torch.Tensor) -> None:
    """The chain backbone -> projector blocks must give the method's own ``projection`` (up to its
    scale: SubTab normalises it), or the layers would not be the ones trained."""
    n_proj = sum(1 for name, _, _ in blocks if name.startswith("projector."))
    h = method.backbone(x)
    for _, _, block in blocks[:n_proj]:
        h = block(h)
    own = method.projection(x)
    if own is None or not torch.allclose(F.normalize(h.float(), dim=1), F.normalize(own.float(), dim=1), atol=1e-4):
        raise UsageError(
            f"{type(method).__name__.lower()} feeds its projector something other than the backbone's output; "
            "the layers protocol cannot probe its layers"
        )


@torch.no_grad()
def _apply(block: nn.Module, features: torch.Tensor, batch_size: int) -> torch.Tensor:
    dtype = next(block.parameters(), features).dtype
    return torch.cat(
        [block(features[i : i + batch_size].to(dtype)).float() for i in range(0, len(features), batch_size)]
    )


def measure(ctx: EvalContext, feats: dict) -> dict:
    """The weighted kNN (the run's k and T), the linear probe and the test features' geometry of
    one layer's ``feats`` (split -> features)."""
    e, y, k = ctx.cfg.eval, ctx.labels, ctx.num_classes
    train, test = (feats["train"], y["train"]), (feats["test"], y["test"])
    out = {"knn_top1": knn_top1(*train, *test, k=e.knn_k, temperature=e.knn_t, num_classes=k)}
    probe = linear_probe(*train, *test, k, seed=ctx.seed)
    out["linear_top1"], out["linear_weight_decay"] = probe["top1"], probe["weight_decay"]
    return {**out, **geometry(*test, UNIFORMITY_SAMPLES, ctx.seed)}


def _raw_baseline(ctx: EvalContext, splits: dict) -> dict | None:
    """kNN, linear probe and geometry of the raw-input features, once; reused from the frozen
    protocols' baseline when they ran, None when the baseline was skipped (``--no-raw``)."""
    if ctx.raw is not None:
        raw = ctx.raw
    elif ctx.features or not ctx.settings.get("raw", True):
        return None
    else:
        raw = {s: raw_features(ctx.run.modality, v).to(ctx.run.device) for s, v in splits.items()}
    return measure(ctx, raw)
