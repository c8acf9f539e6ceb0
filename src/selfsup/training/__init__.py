"""Training, split by concern: :mod:`.build` (a run's parts from its config), :mod:`.step` (one
step), :mod:`.loop` (epochs, logging, stopping), :mod:`.monitor` (online probes, kNN,
diagnostics), :mod:`.checkpoint` and :mod:`.export`."""

from .build import Setup, build
from .loop import train
from .step import train_step, update_step

__all__ = ["Setup", "build", "train", "train_step", "update_step"]
