"""Optimisers, gradient clipping and the learning-rate schedules.

* Parameter groups: biases and normalisation parameters (every parameter with ``ndim <= 1``) get
  no weight decay and no LARS adaptation, as in BYOL (Grill et al. 2020, Appendix C) and SimCLR
  (``exclude_bias_norm``; SwAV's code includes them). Their learning rate can be scaled
  (``bias_lr_scale``: Barlow Twins' code trains biases and norms at 0.0048 against 0.2, 0.024x), and
  a method can name parameters whose learning rate stays at the peak (SimSiam's ``--fix-pred-lr``).
* :class:`LARS` (You et al. 2017, "Large Batch Training of Convolutional Networks", Algorithm 1) in
  the two trust-ratio forms in use, with LARC's optional clipping; see its docstring.
* :func:`clip_gradients`: the global norm (``torch.nn.utils.clip_grad_norm_``) or each parameter's
  own norm (DINO's ``utils.clip_gradients``, also SiT's and GMML's).
* :func:`lr_at`: linear warm-up to the peak, then cosine decay (Loshchilov & Hutter 2017) to
  ``final_ratio`` of it. The peak is ``lr * batch_size / 256`` (Goyal et al. 2017 linear scaling),
  the convention of every method paper here. :func:`infinite_lr_at`: the infinite schedule for
  continual pretraining.

Hyperparameters that change during a run (``lr``, ``weight_decay``) may be plain floats or 0-d
float64 tensors on the parameters' device: the form a CUDA graph needs (:mod:`selfsup.training.graph`),
where a float would be frozen into the graph at capture. With tensors, :class:`LARS` and
:class:`AdamW` take the same steps, bit for bit on the CPU, as with the floats they hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .errors import UsageError, unknown

OPTIMIZERS = ("sgd", "lars", "adamw")
TRUST_FORMS = ("update", "lars")
CLIP_MODES = ("global", "per_param")


def param_groups(
    model: nn.Module,
    weight_decay: float,
    exclude_bias_norm: bool = True,
    bias_lr_scale: float = 1.0,
    fixed: Iterable[nn.Parameter] = (),
) -> list[dict]:
    """The optimiser's groups: weights (decayed, LARS-adapted) and biases and norms (neither, with
    ``lr_scale = bias_lr_scale``), each split again when some of its parameters are in ``fixed``
    (their ``lr`` stays at the peak: ``set_lr``). The first two groups always exist, so a checkpoint
    of an optimiser without fixed parameters has the same groups whatever the method."""
    fixed_ids = {id(p) for p in fixed}
    groups = {(is_fixed, plain): [] for is_fixed in (False, True) for plain in (False, True)}
    for p in model.parameters():
        if p.requires_grad:
            groups[(id(p) in fixed_ids, exclude_bias_norm and p.ndim <= 1)].append(p)
    out = []
    for (is_fixed, plain), params in groups.items():
        if is_fixed and not params:
            continue
        # "decayed" marks the groups a weight-decay schedule (set_weight_decay) applies to.
        out.append({"params": params, "weight_decay": 0.0 if plain else weight_decay, "lars": not plain,
                    "decayed": not plain, "lr_scale": bias_lr_scale if plain else 1.0, "fixed": is_fixed})  # fmt: skip
    return out


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al. 2017, Algorithm 1), computed for
    all weights at once on stacked norms (a few kernels a step, not a few per weight; a ResNet-18
    step on a GPU is bound by kernel launches), without host syncs.

    A weight ``w`` with gradient ``g`` and weight decay ``wd`` moves along ``d = g + wd * w``, scaled
    by its trust ratio ``r``, then through momentum: ``v <- m v + r d``, ``w <- w - lr v``.

    * ``trust="update"``: ``r = eta * ||w|| / ||g + wd * w||``, the form of BYOL's, Barlow Twins',
      MoCo v3's and SimCLR's code (``r = 1`` where ``||w||`` or ``||d||`` is 0);
    * ``trust="lars"``: ``r = eta * ||w|| / (||g|| + wd * ||w||)``, the paper's Algorithm 1, NVIDIA
      apex's LARC and solo-learn's (``r = 1`` where ``||w||`` or ``||g||`` is 0).

    ``clip_lr`` (LARC's clipping, solo-learn's ``clip_lars_lr``): ``r <- min(r / lr, 1)``, so a layer's
    step size is ``lr * min(r / lr, 1) = min(r, lr)``. ``eta`` is the papers' trust coefficient (0.001).
    Groups with ``lars=False`` are plain SGD with momentum (and their own weight decay).
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001,
                 trust: str = "update", clip_lr: bool = False):  # fmt: skip
        if trust not in TRUST_FORMS:
            raise unknown("LARS trust-ratio form", trust, TRUST_FORMS)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True)
        super().__init__(params, defaults)
        self.trust, self.clip_lr = trust, clip_lr

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            wd, lr = group["weight_decay"], group["lr"]
            if group["lars"]:
                w = torch.stack(torch._foreach_norm(params))
                if self.trust == "lars":
                    g = torch.stack(torch._foreach_norm(grads))
                    ok, ratio = (w > 0) & (g > 0), group["eta"] * w / (g + wd * w)
            if isinstance(wd, torch.Tensor):  # p + wd * g with a device scalar (a graph's form)
                grads = torch._foreach_addcmul(grads, params, [wd] * len(params))
            elif wd:
                grads = torch._foreach_add(grads, params, alpha=wd)
            if group["lars"]:
                if self.trust == "update":
                    d = torch.stack(torch._foreach_norm(grads))
                    ok, ratio = (w > 0) & (d > 0), group["eta"] * w / d
                if self.clip_lr:
                    ratio = torch.clamp(ratio / lr, max=1.0)
                grads = torch._foreach_mul(grads, torch.where(ok, ratio, torch.ones_like(w)).unbind())
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:  # zeros, so the first buffer equals the update
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            if isinstance(lr, torch.Tensor):
                torch._foreach_addcmul_(params, bufs, [lr] * len(params), value=-1)
            else:
                torch._foreach_add_(params, bufs, alpha=-lr)


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2) in the arithmetic of
    ``torch.optim.AdamW``'s per-tensor path, written for a CUDA graph: ``lr`` and ``weight_decay`` may
    be 0-d device tensors, and the bias corrections are computed on the device, in float64, from each
    parameter's own step count (a parameter without a gradient, such as DINO's frozen last layer,
    is skipped and its count stays behind, as in torch's). Its state (``step``, ``exp_avg``,
    ``exp_avg_sq``) is torch's, so either optimiser resumes the other's checkpoint.

    Per step: ``w <- w (1 - lr wd)``; ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    # How the step size meets the update: False, as a per-tensor value of addcdiv (torch's AdamW on
    # the CPU, bit for bit; those values must be a host tensor); True, divided into the denominator
    # (torch's capturable form, which a CUDA graph can hold); None: True off the CPU.
    fold_step_size: bool | None = None

    def __init__(self, params, lr: float, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            for p in params:
                state = self.state[p]
                if "step" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["step"] = torch.zeros((), dtype=torch.float64, device=p.device)
                elif state["step"].dtype != torch.float64 or state["step"].device != p.device:  # torch's state
                    state["step"] = state["step"].to(p.device, torch.float64)
            states = [self.state[p] for p in params]
            steps = [st["step"] for st in states]
            exp_avgs = [st["exp_avg"] for st in states]
            exp_avg_sqs = [st["exp_avg_sq"] for st in states]
            torch._foreach_add_(steps, 1.0)
            if isinstance(wd, torch.Tensor) or wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            # The bias corrections in float64 on the device, operation for operation as the host
            # computes them (lr / (1 - b1^t) and (1 - b2^t) ** 0.5, with libm's pow on the CPU).
            t = torch.stack(steps)
            neg_step_size = lr / (torch.pow(beta1, t) - 1)  # -lr / (1 - b1^t)
            bc2_sqrt = torch.pow(1 - torch.pow(beta2, t), torch.full_like(t, 0.5))
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, bc2_sqrt.unbind())
            torch._foreach_add_(denom, eps)
            fold = self.fold_step_size if self.fold_step_size is not None else neg_step_size.device.type != "cpu"
            if fold:  # addcdiv's per-tensor values must be on the host: into the denominator instead
                torch._foreach_div_(denom, neg_step_size.unbind())  # as torch's capturable AdamW does
                torch._foreach_addcdiv_(params, exp_avgs, denom)
            else:  # torch's AdamW on the CPU, rounding for rounding
                torch._foreach_addcdiv_(params, exp_avgs, denom, neg_step_size)


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    lars_eta: float = 0.001,
    exclude_bias_norm: bool = True,
    betas: tuple[float, float] = (0.9, 0.999),
    lars_trust: str = "update",
    lars_clip_lr: bool = False,
    bias_lr_scale: float = 1.0,
    fixed: Iterable[nn.Parameter] = (),
    capturable: bool = False,
) -> torch.optim.Optimizer:
    """The optimiser ``name`` over :func:`param_groups`. ``capturable``: one that takes tensor
    hyperparameters (a CUDA graph's step): SGD as :class:`LARS` without trust ratios and AdamW as
    :class:`AdamW`, the same arithmetic as torch's and the same state."""
    groups = param_groups(model, weight_decay, exclude_bias_norm, bias_lr_scale, fixed)
    if name == "sgd":
        if capturable:
            return LARS([{**g, "lars": False} for g in groups], lr=lr, momentum=momentum)
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=lars_eta, trust=lars_trust, clip_lr=lars_clip_lr)
    if name == "adamw":
        return (AdamW if capturable else torch.optim.AdamW)(groups, lr=lr, betas=tuple(betas))
    raise unknown("optimizer", name, OPTIMIZERS)


@torch.no_grad()
def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float, mode: str = "global") -> None:
    """Clip gradients to ``max_norm`` without a host sync: their global norm (``"global"``), or each
    parameter's own norm (``"per_param"``, DINO's ``clip_gradients``: a gradient whose norm is below
    the bound is left untouched, a larger one is scaled to ``max_norm / (norm + 1e-6)``)."""
    params = [p for p in parameters if p.grad is not None]
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    if mode != "per_param":
        raise unknown("gradient clipping mode", mode, CLIP_MODES)
    grads = [p.grad for p in params]
    if grads:
        norms = torch.stack(torch._foreach_norm(grads))
        coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
        torch._foreach_mul_(grads, coef.unbind())


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, final_ratio: float = 0.0) -> float:
    """Learning rate for optimiser step ``step`` (0-based)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    final = peak * final_ratio
    return final + (peak - final) * (1 + math.cos(math.pi * progress)) / 2


def infinite_lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, cooldown_steps: int,
                   constant_ratio: float, anneal_steps: int, final_ratio: float = 0.0) -> float:  # fmt: skip
    """The infinite learning-rate schedule for continual pretraining (Singh et al., "Beyond Cosine
    Decay: the infinite learning-rate schedule for continual pre-training"): linear warm-up to the
    peak, a cosine cool-down to ``constant_ratio`` of the peak over ``cooldown_steps``, a constant
    phase at that rate, and a final anneal to ``final_ratio`` of the peak over the last
    ``anneal_steps`` (exponential, as the paper's annealing phase; linear when ``final_ratio`` is 0).
    A run can be continued from the end of its constant phase without a second warm-up."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    constant = peak * constant_ratio
    k = step - warmup_steps
    if k < cooldown_steps:
        return constant + (peak - constant) * (1 + math.cos(math.pi * k / cooldown_steps)) / 2
    anneal_start = total_steps - anneal_steps
    if step < anneal_start or anneal_steps <= 0:
        return constant
    progress = min((step - anneal_start) / anneal_steps, 1.0)
    final = peak * final_ratio
    if final <= 0:
        return constant * (1 - progress)
    return constant * (final / constant) ** progress


def wd_at(step: int, total_steps: int, base: float, final: float) -> float:
    """Weight decay for optimiser step ``step``: cosine from ``base`` to ``final`` over the run (the
    schedule of DINO's and I-JEPA's code, 0.04 -> 0.4 for ViTs)."""
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return final + (base - final) * (1 + math.cos(math.pi * progress)) / 2


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Set the weight decay of the decayed groups (biases and norms stay at 0)."""
    for group in optimizer.param_groups:
        if group.get("decayed"):
            group["weight_decay"] = weight_decay


def set_lr(optimizer: torch.optim.Optimizer, lr: float, peak: float | None = None) -> None:
    """Set every group's learning rate: ``lr`` (the peak for groups of fixed parameters), times the
    group's ``lr_scale``."""
    for group in optimizer.param_groups:
        rate = peak if group.get("fixed") and peak is not None else lr
        group["lr"] = rate * group.get("lr_scale", 1.0)


def check_optim(name: str, lars_trust: str, clip_grad_mode: str) -> None:
    if name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS)
    if lars_trust not in TRUST_FORMS:
        raise UsageError(f"optim.lars_trust must be one of {', '.join(TRUST_FORMS)}, got {lars_trust!r}")
    if clip_grad_mode not in CLIP_MODES:
        raise UsageError(f"optim.clip_grad_mode must be one of {', '.join(CLIP_MODES)}, got {clip_grad_mode!r}")
