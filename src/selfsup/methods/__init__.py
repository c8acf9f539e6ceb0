"""Methods by name. ``METHODS[name]`` is a :class:`~selfsup.methods.base.Method` subclass.

Every module of this package that defines a ``Method`` subclass with a ``name`` is registered: a
new method is one new file, and nothing else needs editing. Shared pieces live in :mod:`.parts`.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import UsageError
from .base import Method


def _discover() -> dict[str, type[Method]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg or info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Method)
                and obj.__module__ == module.__name__
                and getattr(obj, "name", None)
            ):
                found[obj.name] = obj
    return dict(sorted(found.items()))


METHODS: dict[str, type[Method]] = _discover()


def fits(method: type[Method], modality) -> bool:
    """Whether ``method`` makes sense on ``modality``'s data (it declares so, and the modality has
    views for its default plan)."""
    if method.modalities is not None and modality.name not in method.modalities:
        return False
    return modality.supports(method.view_plan(method.Args()))


def check_fits(method: type[Method], modality) -> None:
    if not fits(method, modality):
        names = [m.name for m in METHODS.values() if fits(m, modality)]
        raise UsageError(
            f"{method.name} does not work on {modality.name} data; methods for {modality.name} data: "
            + ", ".join(names)
        )


def build_method(cfg, backbone) -> Method:
    """The method a resolved config names, on ``backbone``, with the config's ``method_args``."""
    cls = METHODS[cfg.method]
    return cls(backbone, cls.Args(**cfg.method_args))


__all__ = ["METHODS", "Method", "build_method", "check_fits", "fits"]
