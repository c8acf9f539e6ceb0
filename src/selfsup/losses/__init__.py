"""Self-supervised losses as pure functions: no state, no modules.

``from selfsup import losses`` and call them from your own loop. Every function accepts float32
or bf16 inputs and computes in float32, so a loss called inside ``torch.autocast`` has the value
it has outside it, up to the rounding of its inputs. One file per family of losses; each
function's docstring cites the paper and equation it implements.
"""

from .contrastive import infonce, nt_xent
from .distillation import dino_loss, swav_loss
from .redundancy import barlow_twins_loss, vicreg_loss, vicreg_terms
from .regression import byol_loss, negative_cosine

__all__ = [
    "byol_loss",
    "negative_cosine",
    "nt_xent",
    "infonce",
    "barlow_twins_loss",
    "vicreg_loss",
    "vicreg_terms",
    "dino_loss",
    "swav_loss",
]
