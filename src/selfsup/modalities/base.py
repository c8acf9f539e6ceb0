"""The modality seam: what the rest of selfsup may ask of a kind of data.

A modality (images today; tables and series next) is the one place that knows what a sample is.
Training, the methods, the losses and the evaluation protocols work on tensors and ask the run's
modality for everything that depends on the data's kind:

* its **sources** (``digits``, ``folder:PATH`` ...), each returning a
  :class:`~selfsup.data.base.Dataset` whose ``modality`` names it;
* the concrete **views** a method's :class:`ViewPlan` asks for (the modality's own per-view
  settings dataclass, ``view_config``, validated from the config's ``augment`` section), and the
  batched **view maker** that draws them on the device;
* the **input spec**: statistics of the training split and whatever else an encoder needs to be
  fed (normalisation, sizes, column types); it is recorded in the exported encoder;
* the deterministic **evaluation transform**, the **raw-input baseline** features a
  representation must beat, the **memory format** of model inputs;
* what a report **draws** of its samples.

A new modality is a new sub-package ``selfsup/modalities/<name>/`` whose ``__init__`` defines
``MODALITY``, an instance of a :class:`Modality` subclass; it is found by discovery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

# The kinds of views a method can ask for. The modality turns a kind into concrete views.
VIEW_KINDS = {
    "pair": "two views drawn from the same recipe (SimCLR, MoCo v2)",
    "asymmetric_pair": "two views from two different recipes (BYOL's blur/solarisation split)",
    "multicrop": "two global views and n_local small local views (SwAV, DINO)",
    "single": "one lightly augmented view (RotNet, masked modelling on images)",
    "masked": "one clean view; the method masks it itself (MAE, I-JEPA, T-JEPA)",
}


@dataclass
class ViewPlan:
    """The views a method needs, independent of the data's kind.

    ``kind`` is one of :data:`VIEW_KINDS`; ``style`` names the paper whose augmentation the method
    follows (``"byol"``, ``"simclr"``, ``"swav"`` ...), a hint a modality may honour with that
    paper's recipe; ``n_local`` counts multi-crop's local views; ``options`` carries settings of the
    method's ``Args`` that shape the views (multi-crop scales and sizes, I-JEPA's crop scale). A
    modality that has no recipe for a plan says so in one line.
    """

    kind: str
    style: str = ""
    n_local: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.kind in VIEW_KINDS, f"unknown view kind {self.kind!r}"

    @property
    def count(self) -> int:
        """How many views a step gets."""
        return {"pair": 2, "asymmetric_pair": 2, "multicrop": 2 + self.n_local}.get(self.kind, 1)


class Views:
    """What a modality's view maker is: ``views(batch, generator, shard) -> list[Tensor]`` draws a
    method's views of a batch on the device, and ``eval_transform(batch)`` is the deterministic
    transform of evaluation and export.

    ``shard=(rank, world_size)``: ``batch`` holds this rank's rows of a global batch; the random
    parameters of the whole global batch are drawn (every rank's generator stays in step) and this
    rank's rows kept, so N processes compute what one process computes.
    """

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, shard: tuple[int, int] = (0, 1)
    ) -> list[torch.Tensor]:
        raise NotImplementedError

    def eval_transform(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class Source:
    """A data source kind: ``name`` is matched exactly (``digits``) or, ending in ``:``, as a prefix
    (``folder:``); ``load(spec, options)`` returns a Dataset, ``describe(data_dir)`` lists what
    ``selfsup data`` shows (a list of dicts with name, available, location, note)."""

    name: str
    load: Callable[..., Any]
    describe: Callable[[str | None], list[dict]]
    usage: str  # how a user writes it: "folder:PATH"

    def matches(self, spec: str) -> bool:
        return spec.startswith(self.name) if self.name.endswith(":") else spec == self.name


class Modality:
    """The interface. Subclasses fill in every method; :mod:`selfsup.modalities.image` is the
    reference implementation."""

    name: ClassVar[str]
    raw_name: ClassVar[str]  # the baseline's name in tables: "raw pixels", "raw features"
    view_config: ClassVar[type]  # dataclass of one view's settings (augment.views entries)
    default_backbone: ClassVar[str]
    sources: ClassVar[tuple[Source, ...]] = ()
    view_kinds: ClassVar[frozenset[str]] = frozenset()  # the ViewPlan kinds it has recipes for

    def supports(self, plan: ViewPlan) -> bool:
        return plan.kind in self.view_kinds

    # ----------------------------------------------------------------------------- config time
    def default_views(self, plan: ViewPlan, augment) -> list:
        """The view settings (``view_config`` instances) for ``plan`` with the config's ``augment``
        section; a one-line UsageError when this modality has no recipe for the plan."""
        raise NotImplementedError

    def check_config(self, cfg, named: frozenset[str] = frozenset()) -> None:
        """Reject settings that make no sense for this modality (one-line UsageError), and settle
        those that depend on each other. ``named``: the dotted keys the user set by name (flags and
        ``--set``), which win over what a recipe derives from its other settings."""

    # ------------------------------------------------------------------------------- data time
    def input_spec(self, data, cfg) -> dict:
        """What the model is fed, from the training split: statistics and shapes (JSON-ready).
        Recorded in the exported encoder; everything downstream rebuilds its transforms from it."""
        raise NotImplementedError

    def views(self, view_configs: list, spec: dict, data=None) -> Views:
        """The view maker for ``view_configs``; ``data`` (the run's Dataset, when training) is there for
        views that draw from the training split itself (SCARF's marginals)."""
        raise NotImplementedError

    def eval_transform(self, spec: dict) -> Callable[[torch.Tensor], torch.Tensor]:
        """The deterministic transform of evaluation and export, from an input spec alone."""
        raise NotImplementedError

    def check_input(self, data, spec: dict) -> None:
        """A one-line UsageError when ``data`` cannot be fed to an encoder trained on ``spec``."""

    def memory_format(self, channels_last: bool) -> torch.memory_format:
        """The layout model inputs are given in (channels_last only means something for 4-D)."""
        return torch.contiguous_format

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """The raw-input baseline: float features (n, d) of a chunk of samples, compared under
        every protocol beside the encoder's."""
        return x.reshape(len(x), -1).float()

    def finetune_views(self, spec: dict, first_view, settings) -> Callable | None:
        """The augmentation of end-to-end fine-tuning (``batch, generator -> view``), or None for
        none; ``first_view`` is the run's first view config, ``settings`` the protocol's."""
        return None

    # ---------------------------------------------------------------------------------- report
    def pictures(self, context) -> dict[str, str]:
        """Figures of a run's samples for the report (name -> PNG data URI); ``context`` is a
        :class:`selfsup.report.RunContext`."""
        return {}
