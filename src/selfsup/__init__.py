"""selfsup: self-supervised representation learning, fast on one GPU or a laptop CPU.

The public API::

    import selfsup
    cfg = selfsup.build_config("byol-digits", epochs=20)
    summary = selfsup.train(cfg, out="runs/byol-digits")
    encoder = selfsup.load_encoder("runs/byol-digits")
    selfsup.export_run("runs/byol-digits", "onnx")      # also torchscript, safetensors; checked on the run's data
    from selfsup import losses        # pure loss functions for your own loop
"""

from pathlib import Path

import torch

from . import losses
from .backbones.custom import adopt_for_run
from .config import Config, build_config, load_run_config
from .embeddings import duplicates, k_center, nearest_neighbors, select_diverse
from .encoder import embed, load_encoder
from .export import export_run
from .methods import METHODS
from .runs import RunFolder
from .training import train as _train
from .version import __version__


def train(
    cfg: Config | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    reporter=None,
    backbone: torch.nn.Module | None = None,
) -> dict:
    """Pretrain ``cfg.method`` on ``cfg.data`` (:func:`selfsup.training.train`); returns the summary.

    ``backbone``: your own ``nn.Module`` mapping the modality's model input to features ``(N, D)``,
    trained instead of the one ``cfg.model`` names. ``D`` is what it declares (``feature_dim``,
    ``num_features`` or ``embed_dim``), else found by one forward of one training sample
    (:mod:`selfsup.backbones.custom`). Its run's encoder loads with
    ``selfsup.load_encoder(run, backbone=<a fresh instance>)``; a resumed run is given it again.
    """
    if backbone is not None:
        backbone = adopt_for_run(
            backbone, cfg if cfg is not None else load_run_config(RunFolder(resume).require("config"))
        )
    return _train(cfg, out=out, resume=resume, reporter=reporter, backbone=backbone)


__all__ = [
    "Config",
    "METHODS",
    "build_config",
    "duplicates",
    "embed",
    "export_run",
    "k_center",
    "load_encoder",
    "losses",
    "nearest_neighbors",
    "select_diverse",
    "train",
    "__version__",
]
