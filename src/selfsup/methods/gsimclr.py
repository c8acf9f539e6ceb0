"""G-SimCLR: Self-Supervised Contrastive Learning with Guided Projection via Pseudo Labelling
(Chakraborty, Gosthipaty & Paul 2020, ICDM Workshops, arXiv:2010.00773).

SimCLR whose batches hold no two images of one pseudo label, so NT-Xent's negatives are less often
of the same class: before training, a denoising autoencoder is trained on the unlabelled images,
its latent codes are clustered with k-means into as many clusters as a batch holds, and the
loader cycles through the clusters (:mod:`selfsup.data.grouping`). The network, loss and views
are SimCLR's.

Notes on defaults and deviations: docs/methods/gsimclr.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate.cluster import kmeans
from .simclr import SimCLR


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DenoisingAutoencoder(nn.Module):
    """The authors' CIFAR-10 autoencoder (``Autoencoder.ipynb``): Gaussian input noise, three
    conv-BN-ReLU-max-pool stages (32, 64, 128 channels), a mirrored decoder with upsampling and a
    sigmoid output; the latent code is the global average of the last stage's map (128-d)."""

    def __init__(self, channels: int, noise: float = 0.01):
        super().__init__()
        self.noise = noise
        self.encoder = nn.Sequential(
            *_block(channels, 32), nn.MaxPool2d(2), *_block(32, 64), nn.MaxPool2d(2), *_block(64, 128), nn.MaxPool2d(2)
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2),
            *_block(128, 128),
            nn.Upsample(scale_factor=2),
            *_block(128, 64),
            nn.Upsample(scale_factor=2),
            *_block(64, 32),
            nn.Conv2d(32, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy = x + self.noise * torch.randn_like(x) if self.training else x
        return self.decoder(self.encoder(noisy))

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean(dim=(2, 3))


def pseudo_labels(
    images: torch.Tensor,
    clusters: int,
    epochs: int,
    noise: float,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> torch.Tensor:
    """G-SimCLR's pseudo labels of uint8 ``images`` (N, C, H, W): train the denoising autoencoder
    (MSE on [0, 1] pixels, Adam) on them, then k-means of the latent codes into ``clusters``."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        side = max(8, -(-images.shape[-1] // 8) * 8)  # three halvings: a multiple of 8

        def pixels(idx):
            x = images[idx].to(device).float() / 255
            return (
                F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False) if x.shape[-1] != side else x
            )

        dae = DenoisingAutoencoder(images.shape[1], noise).to(device)
        opt = torch.optim.Adam(dae.parameters(), lr=lr)
        n = len(images)
        for _ in range(epochs):
            dae.train()
            for idx in torch.randperm(n, generator=g).split(batch_size):
                x = pixels(idx)
                loss = F.mse_loss(dae(x), x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        dae.eval()
        with torch.no_grad():
            codes = torch.cat([dae.code(pixels(idx)) for idx in torch.arange(n).split(1024)])
    return kmeans(codes.cpu(), min(clusters, n), n_init=3, seed=seed)[1]


class GSimCLR(SimCLR):
    name = "gsimclr"
    paper = (
        "Chakraborty, Gosthipaty & Paul 2020, G-SimCLR: Self-Supervised Contrastive Learning with Guided "
        "Projection via Pseudo Labelling (arXiv:2010.00773)"
    )
    modalities = ("image",)  # the pseudo-labelling autoencoder is convolutional

    @dataclass
    class Args(SimCLR.Args):
        clusters: int = 0  # k-means clusters; 0: the global batch size (the authors': 64 for batches of 64)
        dae_epochs: int = 20  # autoencoder training epochs (not stated by the authors)
        dae_noise: float = 0.01  # stddev of the Gaussian input noise on [0, 1] pixels (GaussianNoise(1e-2))
        dae_lr: float = 1e-3  # Adam (Keras' default, as the authors' compile(optimizer='adam'))
        dae_batch_size: int = 64

    def __init__(self, backbone: nn.Module, args: GSimCLR.Args):
        super().__init__(backbone, args)
        self._groups: torch.Tensor | None = None  # the pseudo labels, checkpointed via extra state

    def get_extra_state(self):
        return {"pseudo_labels": self._groups}

    def set_extra_state(self, state):
        self._groups = state["pseudo_labels"]

    def batch_groups(self, train: torch.Tensor, batch_size: int, seed: int, device: torch.device) -> torch.Tensor:
        """The pseudo labels the loader keeps apart in a batch: computed once (the autoencoder and
        k-means on the training images), then kept in the checkpoint so a resumed run reuses them."""
        if self._groups is None or len(self._groups) != len(train):
            a = self.args
            self._groups = pseudo_labels(
                train, a.clusters or batch_size, a.dae_epochs, a.dae_noise, a.dae_lr, a.dae_batch_size, seed, device
            )
        return self._groups
