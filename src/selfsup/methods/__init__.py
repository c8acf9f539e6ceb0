"""Methods by name. ``METHODS[name]`` is a :class:`~selfsup.methods.base.Method` subclass.

Every module of this package that defines a ``Method`` subclass with a ``name`` is registered: a
new method is one new file, and nothing else needs editing.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Method

_SHARED = {"base", "heads", "teacher", "queue", "multicrop", "sinkhorn", "masking", "blockmask"}


def _discover() -> dict[str, type[Method]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _SHARED or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Method) and obj.__module__ == module.__name__ \
                    and getattr(obj, "name", None):
                found[obj.name] = obj
    return dict(sorted(found.items()))


METHODS: dict[str, type[Method]] = _discover()

__all__ = ["METHODS", "Method"]
