"""selfsup: self-supervised representation learning, fast on one GPU or a laptop CPU.

The public API::

    import selfsup
    cfg = selfsup.build_config("byol-digits", epochs=20)
    summary = selfsup.train(cfg, out="runs/byol-digits")
    encoder = selfsup.load_encoder("runs/byol-digits")
    from selfsup import losses        # pure loss functions for your own loop
"""
__version__ = "0.1.0"

from . import losses  # noqa: E402
from .config import Config, build_config  # noqa: E402
from .encoder import embed, load_encoder  # noqa: E402
from .methods import METHODS  # noqa: E402
from .train import train  # noqa: E402

__all__ = ["Config", "METHODS", "build_config", "embed", "load_encoder", "losses", "train", "__version__"]
