"""``mlp``: T-JEPA's downstream protocol (Thimonier et al. 2025, Sec. 4; the authors'
``src/models/mlp.py`` and ``benchmark.py``): an MLP trained with labels on frozen features,
beside the same MLP on the raw input, early-stopped on a validation split taken from the training
split (never the test split), over several seeds, mean and std.

The MLP (the authors' ``MLP``): a linear layer to ``hidden``, then ``depth - 1`` blocks of
linear, ReLU, dropout and BatchNorm, and a linear head; inputs standardised with the training
split's statistics; AdamW with a cosine learning-rate decay over ``epochs``; cross-entropy for
classes, mean squared error on the standardised target for regression. Each seed draws its own
validation split (10%, stratified for classes) and initialisation; training stops after
``patience`` epochs without a better validation score (accuracy, ties broken by the validation
loss), and the best epoch's weights are scored on
the test split. By default the same settings serve the embeddings and the raw input; with
``search`` each representation gets its own learning rate, dropout and width, chosen from
:data:`SEARCH_GRID` on the first seed's validation split (the authors tuned each representation
separately, though on their test split). Settings: ``ctx.settings["mlp"]`` (a dict of
:class:`MLPSettings` fields; ``selfsup eval --mlp-search``).
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..linear import standardize, threads_for
from ._heldout import held_out, rmse, target_scale, top1
from .base import EvalContext, Protocol, Row


@dataclass
class MLPSettings:
    """Defaults chosen between two candidates (lr 1e-3, dropout 0.1, 3 layers, weight decay 1e-5;
    and these) on the validation split of a pilot T-JEPA run on Adult, where these scored higher on
    both the embeddings and the raw input; not tuned further."""

    hidden: int = 256
    depth: int = 4  # the linear layer in, then depth - 1 hidden blocks
    dropout: float = 0.2
    lr: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 512  # the authors' configs
    epochs: int = 100
    patience: int = 16  # the authors' tuned configs' exp_patience
    seeds: int = 5
    held_out: float = 0.1
    search: bool = False  # choose lr, dropout and hidden from SEARCH_GRID per representation


# The grid ``search`` tries (our choice, 12 candidates): the default learning rate and a step of
# about 3x either side, the default width and twice it, with and without dropout.
SEARCH_GRID = {"lr": (1e-4, 3e-4, 1e-3), "dropout": (0.0, 0.2), "hidden": (256, 512)}


def build_mlp(in_dim: int, out_dim: int, s: MLPSettings) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_dim, s.hidden)]
    for _ in range(s.depth - 1):
        layers += [nn.Linear(s.hidden, s.hidden), nn.ReLU(), nn.Dropout(s.dropout), nn.BatchNorm1d(s.hidden)]
    return nn.Sequential(*layers, nn.Linear(s.hidden, out_dim))


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's outputs on ``x`` in evaluation mode, in chunks of 8,192 rows."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + 8192]) for i in range(0, len(x), 8192)])


def _predict(model: nn.Module, x: torch.Tensor, classes: int | None) -> torch.Tensor:
    out = _outputs(model, x)
    return out.argmax(1) if classes else out.reshape(-1)


def train_mlp(x_fit, y_fit, x_val, y_val, classes: int | None, s: MLPSettings, seed: int) -> tuple[nn.Module, dict]:
    """An MLP trained on ``(x_fit, y_fit)`` (standardised inputs; standardised targets for
    regression), early-stopped on the validation score; the best epoch's model."""
    torch.manual_seed(seed)
    model = build_mlp(x_fit.shape[1], classes or 1, s).to(x_fit.device)
    steps = max(1, -(-len(x_fit) // s.batch_size)) * s.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, waited = None, None, 0, 0
    for epoch in range(s.epochs):
        model.train()
        order = torch.randperm(len(x_fit), generator=gen).to(x_fit.device)
        for i in range(0, len(order), s.batch_size):
            idx = order[i : i + s.batch_size]
            if len(idx) < 2:  # BatchNorm needs two rows
                continue
            out = model(x_fit[idx])
            loss = F.cross_entropy(out, y_fit[idx]) if classes else F.mse_loss(out.reshape(-1), y_fit[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        score = _val_score(model, x_val, y_val, classes)
        if best is None or score > best:
            best, best_state, best_epoch, waited = score, copy.deepcopy(model.state_dict()), epoch + 1, 0
        else:
            waited += 1
            if waited >= s.patience:
                break
    model.load_state_dict(best_state)
    return model, {"best_epoch": best_epoch, "epochs_run": epoch + 1, "val_score": best[0], "val_tiebreak": best[1]}


def search_settings(x, y, classes: int | None, s: MLPSettings, seed: int):
    """Each point of :data:`SEARCH_GRID` trained once on seed ``seed``'s fit part of the training
    split and scored on its validation part (the test split is never read). Returns the settings
    with the best validation score, every trial, and the best trial's model and info, which are
    seed ``seed``'s run under those settings (the protocol reuses them rather than train it again)."""
    fit, val = held_out(y, seed, s.held_out)
    fit, val = fit.to(x.device), val.to(x.device)
    trials, best = [], None
    for values in itertools.product(*SEARCH_GRID.values()):
        point = dict(zip(SEARCH_GRID, values, strict=True))
        model, info = train_mlp(x[fit], y[fit], x[val], y[val], classes, replace(s, **point), seed)
        trials.append({**point, **info})
        if best is None or (info["val_score"], info["val_tiebreak"]) > (best[1]["val_score"], best[1]["val_tiebreak"]):
            best = (model, info, point)
    return replace(s, **best[2]), trials, best[:2]


def _val_score(model: nn.Module, x_val, y_val, classes: int | None) -> tuple[float, float]:
    """Validation accuracy with ties broken by the lower validation cross-entropy (a small validation
    split is often perfect after a few epochs, and the first perfect epoch is rarely the best
    model); minus the RMSE for regression."""
    out = _outputs(model, x_val)
    if classes:
        return top1(out.argmax(1), y_val), -float(F.cross_entropy(out, y_val))
    return -rmse(out.reshape(-1), y_val), 0.0


def mlp_protocol(train_x, train_y, test_x, test_y, classes: int | None, settings: MLPSettings, seed: int = 0) -> dict:
    """Test accuracy (classes) or RMSE (regression) of the MLP over ``settings.seeds`` seeds."""
    start = time.perf_counter()
    with threads_for(train_x):  # one thread for small problems: much faster on shared cores
        out = _mlp_protocol(train_x, train_y, test_x, test_y, classes, settings, seed)
    out["seconds"] = round(time.perf_counter() - start, 3)
    return out


def _mlp_protocol(train_x, train_y, test_x, test_y, classes: int | None, settings: MLPSettings, seed: int) -> dict:
    train_x, test_x = standardize(train_x, test_x)
    train_y, test_y = train_y.to(train_x.device), test_y.to(train_x.device)
    scale = target_scale(train_y) if not classes else 1.0
    shift = float(train_y.double().mean()) if not classes else 0.0
    y = train_y if classes else ((train_y.double() - shift) / scale).float()
    trials, first = None, None
    if settings.search:
        settings, trials, first = search_settings(train_x, y, classes, settings, seed)
    scores, runs = [], []
    for i in range(settings.seeds):
        if i == 0 and first is not None:  # the search already trained seed 0 under these settings
            model, info = first
        else:
            fit, val = held_out(train_y, seed + i, settings.held_out)
            fit, val = fit.to(train_x.device), val.to(train_x.device)
            model, info = train_mlp(train_x[fit], y[fit], train_x[val], y[val], classes, settings, seed + i)
        pred = _predict(model, test_x, classes)
        scores.append(top1(pred, test_y) if classes else rmse(pred.double() * scale + shift, test_y))
        runs.append(info)
    t = torch.tensor(scores, dtype=torch.float64)
    std = float(t.std(unbiased=False)) if len(t) > 1 else 0.0
    out = {"scores": scores, "mean": float(t.mean()), "std": std, "runs": runs}
    if trials is not None:
        out["chosen"] = {k: getattr(settings, k) for k in SEARCH_GRID}
        out["search"] = trials
    if not classes:
        out.update(mean_scaled=out["mean"] / scale, std_scaled=std / scale, target_std=scale)
    return out


class MLP(Protocol):
    name = "mlp"
    description = "T-JEPA's downstream MLP, early-stopped on 10% of the training split, 5 seeds"
    order = 40
    tasks = ("classification", "regression")

    def run(self, ctx: EvalContext) -> dict:
        s = MLPSettings(**(ctx.settings.get("mlp") or {}))
        f, raw, y = ctx.features, ctx.raw, ctx.labels
        classes = ctx.num_classes if y["train"].dtype == torch.int64 else None
        res = mlp_protocol(f["train"], y["train"], f["test"], y["test"], classes, s, ctx.seed)
        base = mlp_protocol(raw["train"], y["train"], raw["test"], y["test"], classes, s, ctx.seed) if raw else None
        result = {}
        names = (
            {"mean": "top1", "std": "top1_std"}
            if classes
            else {"mean": "rmse", "std": "rmse_std", "mean_scaled": "rmse_scaled", "std_scaled": "rmse_scaled_std"}
        )
        for key, name in names.items():
            ctx.headline(result, f"mlp_{name}", res[key], base and base[key])
        details = {
            "settings": asdict(s),
            "seeds": [ctx.seed + i for i in range(s.seeds)],
            "scores": res["scores"],
            "runs": res["runs"],
            "seconds": res["seconds"],
        }
        if "chosen" in res:
            details.update(chosen=res["chosen"], search=res["search"])
        if base:
            details["raw"] = {k: base[k] for k in ("scores", "runs", "seconds", "chosen", "search") if k in base}
        result["mlp"] = details
        return result

    def rows(self, r: dict) -> list[Row]:
        n = len(r["mlp"]["seeds"])
        label = f"MLP (T-JEPA's protocol), {n} seeds" + (", tuned per input" if "chosen" in r["mlp"] else "")
        if "mlp_top1" in r:
            base = (r["mlp_top1_raw"], r["mlp_top1_std_raw"]) if "mlp_top1_raw" in r else None
            return [Row(label, "top-1", (r["mlp_top1"], r["mlp_top1_std"]), base)]
        rows = []
        for key, measure in (("mlp_rmse", "test RMSE"), ("mlp_rmse_scaled", "test RMSE / target std")):
            base = (r[f"{key}_raw"], r[f"{key}_std_raw"]) if f"{key}_raw" in r else None
            rows.append(Row(label, measure, (r[key], r[f"{key}_std"]), base))
        return rows
