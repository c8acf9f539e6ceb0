"""Evaluation protocols by name, found by discovery: every module here defining a
:class:`~.base.Protocol` subclass with a ``name`` is one. A new protocol is one new file."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from ...errors import UsageError, unknown
from .base import EvalContext, Protocol, Row


def _discover() -> dict[str, Protocol]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Protocol)
                and obj.__module__ == module.__name__
                and getattr(obj, "name", None)
            ):
                found.append(obj())
    return {p.name: p for p in sorted(found, key=lambda p: (p.order, p.name))}


PROTOCOLS: dict[str, Protocol] = _discover()


def frozen_protocols() -> list[str]:
    """What ``all`` expands to: the protocols on frozen features."""
    return [name for name, p in PROTOCOLS.items() if p.frozen]


def parse_protocols(protocols: str | Iterable[str]) -> list[str]:
    """``"knn,linear"`` or ``["knn", "linear"]`` (or ``"all"``) as a checked, ordered list without repeats."""
    names = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    out: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        for p in frozen_protocols() if name == "all" else [name]:
            if p not in PROTOCOLS:
                raise unknown("protocol", p, [*PROTOCOLS, "all"])
            if p not in out:
                out.append(p)
    if not out:
        raise UsageError(f"no protocol given; choose from: {', '.join(PROTOCOLS)}, all")
    return out


def result_rows(result: dict) -> list[Row]:
    """The table rows of a result (or a stored summary entry): each protocol that ran, in order."""
    return [row for name, p in PROTOCOLS.items() if name in result for row in p.rows(result)]


__all__ = ["EvalContext", "PROTOCOLS", "Protocol", "Row", "frozen_protocols", "parse_protocols", "result_rows"]
