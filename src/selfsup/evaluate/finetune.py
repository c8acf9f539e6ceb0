"""End-to-end fine-tuning of an exported encoder with a linear head (``--protocol finetune``).

The frozen-feature protocols (kNN, linear probe) under-rate masked-image models, whose features
are not linearly separable before fine-tuning (MAE, He et al. 2022, Sec. 4 and Fig. 9); this
protocol trains the whole encoder plus a linear classifier on the labelled training split, as
MAE's end-to-end fine-tuning (App. A.2, Table 9) in a short form:

* data: the labelled training images - all of them, or a stratified, seeded fraction ``labels``
  (e.g. 0.1: fine-tuning on 10% of the labels, the semi-supervised protocol of SimCLR, Chen et al.
  2020, Sec. 4.2) - minus a stratified, seeded 10% hold-out of those (``held_out``); the hold-out
  picks the epoch whose weights are kept (the best hold-out top-1), and that model is scored once
  on the test split. The test split is never used for any choice.
* baseline (``random_init_baseline``): the same fine-tuning, same data, seed and settings, of a
  freshly initialised encoder of the same architecture - supervised training from scratch, which
  is what pretraining has to beat under this protocol (raw pixels are the frozen protocols' floor).
* augmentation: the modality's fine-tuning views (images: random resized crop and horizontal flip
  with the crop scale and flip probability of the run's first view, so digits runs, which never
  flip, are not flipped here either; the crop's area range can be set with ``crop_scale``; no
  colour operations); evaluation uses the deterministic transform of the exported encoder.
* optimiser: AdamW (betas 0.9, 0.999), peak lr ``lr * batch_size / 256`` (MAE's base lr 5e-4),
  linear warm-up for ``warmup_epochs`` then cosine decay to zero, weight decay 0.05 on weights
  (not on biases, norms, the class token and position embeddings, as MAE), label smoothing 0.1.
* layer-wise lr decay for vision transformers (BEiT / MAE, ``layer_decay`` 0.75): block ``i`` of
  ``depth`` gets ``layer_decay ** (depth + 1 - (i + 1))`` of the lr, the patch and position
  embeddings and class token ``layer_decay ** (depth + 1)``, the final norm and head the full lr.
  ResNets are fine-tuned with one lr for every layer.
* the head: a linear layer on the encoder's own representation (its class token or mean of patch
  tokens for a ViT, the pooled features for a ResNet), weights normal with std 2e-5 and zero bias
  (MAE's fine-tuning head). BatchNorm layers of a ResNet train in the usual way.
* stochastic depth ``drop_path`` for vision transformers (MAE uses 0.1 for ViT-B), set on the copy
  whatever the pretraining used; default 0.

Left out of MAE's recipe for brevity: mixup, cutmix, RandAugment, random erasing and 100 epochs;
the numbers are therefore a short-budget fine-tuning, comparable across methods.
"""

from __future__ import annotations

import copy
import time
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ..coerce import coerce_value
from ..errors import UsageError, unknown
from ..optim import lr_at
from .linear import stratified_split


@dataclass
class FinetuneArgs:
    epochs: int = 10  # passes over the fitting part of the training split
    batch_size: int = 256
    lr: float = 5e-4  # per 256 images (MAE's base lr for fine-tuning)
    weight_decay: float = 0.05
    layer_decay: float = 0.75  # ViT layer-wise lr decay (1: none); ignored for ResNets
    drop_path: float = 0.0  # ViT stochastic depth at the last block during fine-tuning
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    held_out: float = 0.1  # fraction of the labelled images that chooses the epoch
    labels: float = 1.0  # fraction of the training split's labels used (stratified, seeded)
    random_init_baseline: bool = False  # also fine-tune a freshly initialised encoder (evaluate_run)
    crop_scale: tuple[float, float] | None = None  # area range of the random crops; None: the run's first view's

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.batch_size < 1:
            problems.append("epochs and batch_size must be at least 1")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 < self.layer_decay <= 1:
            problems.append("lr must be positive, weight_decay >= 0, layer_decay in (0, 1]")
        if not 0 < self.held_out < 1 or not 0 <= self.label_smoothing < 1 or self.warmup_epochs < 0:
            problems.append("held_out must be in (0, 1), label_smoothing in [0, 1), warmup_epochs >= 0")
        if not 0 <= self.drop_path < 1:
            problems.append(f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.crop_scale is not None and not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            problems.append(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {self.crop_scale}")
        if not isinstance(self.random_init_baseline, bool):
            problems.append(f"random_init_baseline must be true or false, got {self.random_init_baseline!r}")
        if not 0 < self.labels <= 1:
            problems.append(f"labels is the fraction of labelled images to use, in (0, 1], got {self.labels}")
        if problems:
            raise UsageError("bad fine-tuning settings: " + "; ".join(problems))


def finetune_settings(given: dict | Iterable[str] | None) -> FinetuneArgs:
    """:class:`FinetuneArgs` from a dict of fields or from ``KEY=VALUE`` strings (the CLI's
    ``--finetune-set``, values read as YAML); an unknown key or bad value is a one-line UsageError."""
    if given is None:
        return FinetuneArgs()
    if not isinstance(given, dict):
        pairs = {}
        for item in given:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--finetune-set takes KEY=VALUE, got {item!r}")
            try:
                pairs[key.strip()] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise UsageError(f"--finetune-set {item!r}: the value is not valid YAML") from None
        given = pairs
    hints = typing.get_type_hints(FinetuneArgs)
    coerced = {}
    for key, value in given.items():
        if key not in hints:
            raise unknown("fine-tuning setting", key, hints)
        try:  # the config's coercion: "5e-4" (a string to YAML 1.1) is a float, 3.0 an int
            coerced[key] = coerce_value(value, hints[key], key)
        except UsageError:
            wanted = "a [low, high] pair, e.g. [0.8,1]" if key == "crop_scale" else hints[key].__name__
            raise UsageError(f"fine-tuning setting {key} expects {wanted}, got {value!r}") from None
    return FinetuneArgs(**coerced)


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)
        nn.init.normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


_NO_DECAY = ("cls_token", "pos_embed")


def layer_id(name: str, depth: int) -> int:
    """Layer index of an encoder parameter of a ViT for layer-wise lr decay: 0 for the embeddings,
    ``i + 1`` for block ``i``, ``depth + 1`` for the final norm."""
    if name.startswith(("patch_embed", "cls_token", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups(model: Classifier, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups with a ``scale`` of the lr each: weight decay on weights only, and layer-wise
    decay for an encoder with ``blocks`` (a ViT)."""
    blocks = getattr(model.encoder, "blocks", None)
    depth = len(blocks) if isinstance(blocks, nn.ModuleList) else None
    groups: dict = {}
    named = [(f"encoder.{n}", n, p) for n, p in model.encoder.named_parameters()] + [
        (f"head.{n}", None, p) for n, p in model.head.named_parameters()
    ]
    for _, enc_name, p in named:
        if not p.requires_grad:
            continue
        if depth is not None and enc_name is not None:
            scale = layer_decay ** (depth + 1 - layer_id(enc_name, depth))
        else:
            scale = 1.0
        no_decay = p.ndim <= 1 or (enc_name is not None and enc_name.split(".")[0] in _NO_DECAY)
        key = (scale, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "scale": scale, "weight_decay": 0.0 if no_decay else weight_decay}
        groups[key]["params"].append(p)
    return list(groups.values())


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    transform,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = transform(images[start : start + batch_size].to(device))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred = model(x).argmax(dim=1)
        correct += int((pred.cpu() == labels[start : start + batch_size]).sum())
    return correct / len(images)


def finetune(
    encoder: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    eval_transform,
    augment,
    device: torch.device | str = "cpu",
    seed: int = 0,
    args: FinetuneArgs | None = None,
) -> dict:
    """Fine-tune a copy of ``encoder`` (left untouched) with a linear head; see the module docstring.

    Samples are raw (uint8 images ...) on any device; labels int64. ``eval_transform`` turns raw
    samples into the encoder's input (the modality's, from the exported input spec); ``augment``
    (``batch, generator -> input``, the modality's fine-tuning views, with a ``settings`` dict to
    record) is the training augmentation. Returns ``top1`` (test), ``val_top1`` (hold-out top-1 of
    the kept epoch), ``best_epoch``, ``val_history`` (hold-out top-1 per epoch), the settings, the
    split sizes and ``seconds``.
    """
    args = args or FinetuneArgs()
    device = torch.device(device)
    start_time = time.perf_counter()
    amp_dtype = torch.bfloat16 if device.type == "cuda" else None
    train_labels, test_labels = train_labels.cpu(), test_labels.cpu()
    labelled = torch.arange(len(train_labels))
    if args.labels < 1:  # the held-out side of a stratified split is the labelled fraction
        labelled = stratified_split(train_labels, args.labels, seed)[1]
    fit_idx, val_idx = (labelled[i] for i in stratified_split(train_labels[labelled], args.held_out, seed))
    if len(val_idx) == 0 or len(fit_idx) == 0:
        raise UsageError("fine-tuning needs at least two labelled training images per class")
    fit_x, fit_y = train_images[fit_idx], train_labels[fit_idx]
    val_x, val_y = train_images[val_idx], train_labels[val_idx]

    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder), num_classes).to(device)
    if hasattr(model.encoder, "set_drop_path"):
        model.encoder.set_drop_path(args.drop_path)
    for p in model.parameters():
        p.requires_grad_(True)
    groups = param_groups(model, args.weight_decay, args.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=0.0)
    steps_per_epoch = -(-len(fit_x) // args.batch_size)
    total = args.epochs * steps_per_epoch
    warmup = round(args.warmup_epochs * steps_per_epoch)
    peak = args.lr * args.batch_size / 256
    generator = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)

    best = (-1.0, 0, None)  # (hold-out top-1, epoch, state)
    history = []
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(fit_x), generator=order_gen)
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            x = augment(fit_x[idx].to(device), generator)
            y = fit_y[idx].to(device)
            lr = lr_at(step, total, warmup, peak)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["scale"]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=args.label_smoothing)
            if not torch.isfinite(loss):
                raise UsageError(f"fine-tuning diverged at epoch {epoch} (loss {loss.item()}); lower the lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        val = accuracy(model, val_x, val_y, eval_transform, 1024, device, amp_dtype)
        history.append(round(val, 6))
        if val > best[0]:
            best = (val, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    top1 = accuracy(model, test_images, test_labels, eval_transform, 1024, device, amp_dtype)
    return {
        "top1": top1,
        "val_top1": best[0],
        "best_epoch": best[1],
        "val_history": history,
        "settings": {**asdict(args), **getattr(augment, "settings", {}), "peak_lr": peak, "optimizer": "adamw"},
        "n_fit": len(fit_x),
        "n_held_out": len(val_x),
        "seconds": round(time.perf_counter() - start_time, 3),
    }
