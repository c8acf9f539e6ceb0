"""``finetune``: end-to-end fine-tuning of a copy of the encoder with a linear head, the epoch
chosen on a held-out 10% of the training split (:mod:`selfsup.evaluate.finetune`). Not a
frozen-feature protocol: no raw-input baseline, and not part of ``all``; its baseline is the same
fine-tuning from a fresh initialisation (``random_init_baseline``)."""

from __future__ import annotations

import torch

from ...backbones import rebuild
from ..finetune import FinetuneArgs, finetune, finetune_settings
from .base import EvalContext, Protocol, Row


class Finetune(Protocol):
    name = "finetune"
    description = "end-to-end fine-tuning with a linear head, epoch chosen on 10% of the training split"
    order = 90
    frozen = False

    def run(self, ctx: EvalContext) -> dict:
        given = ctx.settings.get("finetune")
        ft = given if isinstance(given, FinetuneArgs) else finetune_settings(given)
        data, encoder, modality, device = ctx.run.dataset, ctx.run.encoder, ctx.run.modality, ctx.run.device
        views = ctx.cfg.view_configs()
        first = views[0] if views else modality.view_config()
        augment = modality.finetune_views(encoder.input_spec, first, ft)
        eval_transform = modality.eval_transform(encoder.input_spec)

        def tune(model):
            return finetune(
                model,
                data.train,
                data.train_labels,
                data.test,
                data.test_labels,
                ctx.num_classes,
                eval_transform,
                augment,
                device,
                ctx.seed,
                ft,
            )

        res = tune(encoder)
        result = {"finetune_top1": res.pop("top1")}
        if ft.random_init_baseline:  # the same architecture, freshly initialised: training from scratch
            torch.manual_seed(ctx.seed)
            base = tune(rebuild(encoder.backbone_spec, encoder.input_spec).to(device))
            result["finetune_top1_random_init"] = base.pop("top1")
            res["random_init"] = {k: base[k] for k in ("val_top1", "best_epoch", "val_history", "seconds")}
        result["finetune"] = res
        return result

    def rows(self, r: dict) -> list[Row]:
        ft = r["finetune"]
        what = f"{ft['n_fit'] + ft['n_held_out']} labels, {ft['settings']['epochs']} epochs"
        rows = [
            Row(
                f"fine-tuning ({what}, best epoch {ft['best_epoch']} on {ft['n_held_out']} held-out)",
                "top-1",
                r.get("finetune_top1"),
            )
        ]
        if "random_init" in ft:
            rows.append(
                Row(
                    f"fine-tuning from random init ({what}, best epoch {ft['random_init']['best_epoch']})",
                    "top-1",
                    r.get("finetune_top1_random_init"),
                )
            )
        return rows
