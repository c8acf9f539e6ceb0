"""Modalities by name, found by discovery: every sub-package defining ``MODALITY`` is one.

``MODALITIES["image"]`` is the image modality; :func:`modality_of` says which modality a data
source spec belongs to without reading any data.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import unknown
from .base import Modality, Source, ViewPlan


def _discover() -> dict[str, Modality]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        modality = getattr(module, "MODALITY", None)
        if isinstance(modality, Modality):
            found[modality.name] = modality
    return dict(sorted(found.items()))


MODALITIES: dict[str, Modality] = _discover()


def get_modality(name: str) -> Modality:
    if name not in MODALITIES:
        raise unknown("modality", name, MODALITIES)
    return MODALITIES[name]


def all_sources() -> list[tuple[Modality, Source]]:
    return [(m, s) for m in MODALITIES.values() for s in m.sources]


def find_source(spec: str) -> tuple[Modality, Source]:
    """The modality and source kind of a data spec such as ``digits`` or ``folder:PATH``."""
    for modality, source in all_sources():
        if source.matches(spec):
            return modality, source
    raise unknown("dataset", spec, [s.usage for _, s in all_sources()])


def modality_of(spec: str) -> Modality:
    return find_source(spec)[0]


__all__ = ["MODALITIES", "Modality", "Source", "ViewPlan", "all_sources", "find_source", "get_modality", "modality_of"]
