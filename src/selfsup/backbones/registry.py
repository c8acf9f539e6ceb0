"""The backbone registry: families of backbones, each with its own options (as timm does it).

A family (``resnet``, ``vit`` ...) registers its member names, a dataclass of its options (the
config's ``model`` keys besides ``backbone``), the modalities it takes and a builder
``build(name, input_spec, options) -> nn.Module``. Every backbone maps a modality's model input to
features ``(N, D)``, has ``feature_dim == D`` and ``spec == {"name": ..., "options": {...}}``: with
the modality's input spec, what rebuilds it (:func:`rebuild`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..coerce import coerce_value
from ..errors import UsageError, closest_first, unknown


@dataclass
class Family:
    name: str
    members: tuple[str, ...]
    options: type  # a dataclass; its fields are the family's config keys
    build: Callable[[str, dict, Any], nn.Module]
    modalities: tuple[str, ...]  # empty: any modality (the custom family)
    prefix: str = ""  # a family of every name starting with this (``module:``) instead of listed members

    def parse_options(self, given: dict, where: str = "model") -> Any:
        """The options dataclass from a mapping, each key checked and typed (one-line errors)."""
        hints = typing.get_type_hints(self.options)
        names = [f.name for f in dataclasses.fields(self.options)]
        out = {}
        for key, value in given.items():
            if key not in hints:
                valid = ", ".join(closest_first(str(key), names)) or "none"
                raise UsageError(
                    f"unknown config key {where}.{key} for the {self.name} backbones; valid keys: backbone, {valid}"
                )
            out[key] = coerce_value(value, hints[key], f"{where}.{key}")
        return self.options(**out)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def names() -> list[str]:
    return [n for f in FAMILIES.values() for n in f.members] + [
        f"{f.prefix}package.path:factory" for f in FAMILIES.values() if f.prefix
    ]


def family_of(name: str) -> Family:
    for family in FAMILIES.values():
        if name in family.members or (family.prefix and name.startswith(family.prefix)):
            return family
    raise unknown("backbone", name, names())


def build_backbone(name: str, input_spec: dict, options: Any = None) -> nn.Module:
    """A freshly initialised backbone ``name`` for inputs described by ``input_spec`` (the
    modality's), with its family's ``options`` (a dataclass instance, a mapping, or None for the
    defaults)."""
    family = family_of(name)
    if not dataclasses.is_dataclass(options):
        options = family.parse_options(options or {})
    model = family.build(name, input_spec, options)
    assert getattr(model, "feature_dim", None), f"backbone {name} must set feature_dim"
    spec = getattr(model, "spec", None) or {"options": dataclasses.asdict(options)}
    spec["name"] = name  # a family may keep its own spec (resolved defaults, later changes)
    model.spec = spec
    return model


def rebuild(spec: dict, input_spec: dict) -> nn.Module:
    """The architecture an exported encoder's ``spec`` describes (fresh weights); also reads the
    specs written before backbones had families (``{"name", "in_channels", "stem"}`` for ResNets,
    the ViT's constructor arguments)."""
    if "options" not in spec:  # written before the registry (selfsup <= fef551e)
        legacy = dict(spec)
        name = legacy.pop("name")
        shape = {"channels": legacy.pop("in_channels", None), "size": legacy.pop("image_size", None)}
        input_spec = {**input_spec, **{k: v for k, v in shape.items() if v is not None}}
        return build_backbone(name, input_spec, legacy)
    return build_backbone(spec["name"], input_spec, spec["options"])
