"""Typed values from YAML: the one place config keys, view settings, backbone options and
protocol settings are checked and converted (each mistake is a one-line UsageError)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from .errors import UsageError, closest_first


def coerce_value(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X], X | None
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return coerce_value(value, inner, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, bool):  # YAML reads true/false as booleans; "auto | true | false" keys want the word
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(coerce_value(v, a, key) for v, a in zip(value, args))
    elif tp in (dict, list) or origin in (dict, list):
        if isinstance(value, (origin or tp)):
            return value
    elif tp is Any:
        return value
    else:
        raise AssertionError(f"unsupported config type {tp} for {key}")
    raise UsageError(f"config key {key} expects {getattr(tp, '__name__', tp)}, got {value!r}")


def coerce_fields(cls: type, data: Any, prefix: str) -> dict:
    """Validate ``data`` (a mapping) against the dataclass ``cls``; returns coerced keyword args.
    Nested dataclass fields are validated recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"config section {prefix} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out = {}
    for key, value in data.items():
        sub = f"{prefix}.{key}" if prefix else key
        if key not in hints:
            raise UsageError(
                f"unknown config key {sub!r}; valid keys{' in ' + prefix if prefix else ''}: "
                + ", ".join(closest_first(str(key), names))
            )
        tp = hints[key]
        out[key] = tp(**coerce_fields(tp, value, sub)) if dataclasses.is_dataclass(tp) else coerce_value(value, tp, sub)
    return out
