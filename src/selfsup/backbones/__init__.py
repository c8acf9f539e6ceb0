"""Backbones by name, in families that register themselves (:mod:`.registry`).

``build_backbone(name, input_spec, options)`` returns an ``nn.Module`` mapping a modality's model
input to features ``(N, D)`` with ``.feature_dim == D`` and ``.spec`` (what rebuilds it).
Families: ``resnet`` (resnet18/34/50, resnet-small; images), ``vit`` (vit-tiny/small/base; images).
A new family is a new module in this package calling :func:`~.registry.register`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import FAMILIES, Family, build_backbone, family_of, names, rebuild, register


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()


def backbone_for(cfg, input_spec: dict):
    """The backbone a config's ``model`` section describes, for inputs described by ``input_spec``
    (the modality's), freshly initialised."""
    return build_backbone(cfg.model.backbone, input_spec, cfg.model.options)


__all__ = ["FAMILIES", "Family", "backbone_for", "build_backbone", "family_of", "names", "rebuild", "register"]
