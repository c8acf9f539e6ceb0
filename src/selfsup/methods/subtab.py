"""SubTab: Subsetting Features of Tabular Data for Self-Supervised Representation Learning (Ucar,
Hajiramezanali & Edwards 2021, NeurIPS, arXiv:2110.04361).

Each row's input vector is cut into K overlapping subsets of columns; each subset, with its own
noise (swap noise by default: the table modality's subset views), is encoded by one shared
encoder, and from every subset's latent a decoder reconstructs the *whole* row (Sec. 3, Fig. 1);
optional contrastive (NT-Xent between the projections of every pair of subsets) and distance
terms join the loss (Sec. 3, Eq. 1-4; the authors' ``JointLoss``). At inference the row's
representation is the mean of its subsets' latents (the exported encoder does this).

Notes on defaults and deviations: docs/methods/subtab.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import build_backbone
from ..backbones.mlp import TableMLP
from ..distributed import gather
from ..errors import UsageError
from ..losses.tabular import subtab_terms
from ..modalities.base import ViewPlan
from .base import Method


class SubTab(Method):
    name = "subtab"
    paper = (
        "Ucar et al. 2021, SubTab: Subsetting Features of Tabular Data for Self-Supervised Representation "
        "Learning (arXiv:2110.04361)"
    )
    modalities = ("table",)
    sync_bn = False

    @dataclass
    class Args:
        n_subsets: int = 4  # the authors' configs
        overlap: float = 0.75  # the authors' configs
        noise: str = "swap"  # swap | gaussian | zero | none (the code's noise_type)
        masking_ratio: float = 0.3  # share of a subset's entries that get noise
        noise_level: float = 0.1  # gaussian noise std
        contrastive: bool = True
        distance: bool = True
        temperature: float = 0.1  # the code's tau

    def __init__(self, backbone: nn.Module, args: SubTab.Args):
        if not isinstance(backbone, TableMLP):
            raise UsageError("subtab encodes subsets of the input vector with the mlp backbone; set model.backbone=mlp")
        if args.n_subsets < 2 or args.temperature <= 0:
            raise UsageError("subtab: n_subsets must be at least 2 and temperature > 0")
        if (backbone.subsets, backbone.overlap) != (args.n_subsets, args.overlap):
            # The same MLP made a SubTab encoder: its spec then rebuilds the mean-of-subsets encoder.
            options = {**backbone.spec["options"], "subsets": args.n_subsets, "overlap": args.overlap}
            backbone = build_backbone(backbone.spec["name"], backbone.meta, options)
        super().__init__(backbone, args)
        h = backbone.feature_dim
        # The authors' AEWrapper: a two-layer projection (leaky ReLU between) and a linear decoder
        # (ShallowDecoder) from the latent to the whole input vector.
        self.projector = nn.Sequential(nn.Linear(h, h), nn.LeakyReLU(), nn.Linear(h, h))
        self.decoder = nn.Linear(h, backbone.input_width)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        options = {k: getattr(args, k) for k in ("noise", "masking_ratio", "noise_level")}
        return ViewPlan("multicrop", "subtab", n_local=args.n_subsets - 1, options=options)

    def projection(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.backbone(x)), dim=-1)

    def forward(self, views):
        clean, noisy = views[0], torch.stack(views[1:])  # noisy: (K, B, F), one noisy copy per subset
        k, b, f = noisy.shape
        net = self.backbone
        target = net.inputs(clean).detach()  # the whole clean input vector is what every subset reconstructs
        vectors = net.inputs(noisy.reshape(k * b, f)).reshape(k, b, -1)
        index = net.subset_idx[:, None, :].expand(k, b, -1)
        latents = net.encode_subsets(vectors.gather(2, index))  # (K, B, H): subset k of noisy copy k
        z = F.normalize(self.projector(latents), dim=-1)
        recon = self.decoder(latents)
        z = gather(z.transpose(0, 1)).transpose(0, 1)  # the global batch for the pair terms
        a = self.args
        recon_loss, closs, dloss = subtab_terms(z, recon, target, a.temperature, a.contrastive, a.distance)
        with torch.no_grad():
            features = net(clean)  # the mean of the clean subsets' latents: the exported representation
        return {
            "loss": recon_loss + closs + dloss,
            "recon_loss": recon_loss.detach(),
            "contrastive_loss": closs.detach(),
            "distance_loss": dloss.detach(),
            "features": features,
        }
