"""selfsup: self-supervised representation learning, fast on one GPU or a laptop CPU.

The public API::

    import selfsup
    cfg = selfsup.build_config("byol-digits", epochs=20)
    summary = selfsup.train(cfg, out="runs/byol-digits")
    encoder = selfsup.load_encoder("runs/byol-digits")
    from selfsup import losses        # pure loss functions for your own loop
"""

from . import losses
from .config import Config, build_config
from .encoder import embed, load_encoder
from .methods import METHODS
from .training import train
from .version import __version__

__all__ = ["Config", "METHODS", "build_config", "embed", "load_encoder", "losses", "train", "__version__"]
