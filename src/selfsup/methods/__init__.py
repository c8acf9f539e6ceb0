"""Methods by name. ``METHODS[name]`` is a :class:`~selfsup.methods.base.Method` subclass."""
from __future__ import annotations

from .base import Method
from .byol import BYOL

METHODS: dict[str, type[Method]] = {m.name: m for m in (BYOL,)}

__all__ = ["METHODS", "Method"]
