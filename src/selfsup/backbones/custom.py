"""Your own backbone: any ``nn.Module`` that maps the modality's model input to features ``(N, D)``.

Two ways in:

* from the config, ``model.backbone: module:package.path:factory`` with the factory's keyword
  arguments in ``model.options`` (a mapping; ``--set model.options.width=64``). The factory (a
  function or a class, ``package.path:Outer.create`` works too) is imported when the config is
  resolved; also from the current folder when it is not on ``sys.path`` (as ``python -m`` would
  find it). A factory with a parameter named ``input_spec`` is given the modality's input spec
  (for images: size, channels, mean, std). The name and options are recorded in the run's config
  and its encoder, so :func:`selfsup.load_encoder` rebuilds it (the package must import there too);
* from Python, ``selfsup.train(cfg, backbone=module)``: the module is trained as it is; its run's
  encoder loads with ``selfsup.load_encoder(run, backbone=<a fresh instance>)``, or by itself when
  the module carries a ``spec`` of the ``module:`` form.

Why ``model.options`` and not extra ``model.*`` keys: the factory's arguments are the user's and have
no schema to check, and keeping them in one mapping keeps them apart from the other families' keys
(a shipped recipe's ``model.stem`` is still dropped while it is the ResNets' default, an error
otherwise), and the section reloads from ``config.yaml`` unchanged.

**The feature dimension** ``D`` is what the module declares, the first of ``feature_dim`` (selfsup's
own backbones), ``num_features`` (timm's models), ``embed_dim`` (transformers) that is a positive
int; otherwise one forward of one sample in eval mode without gradients (from Python: a sample of
the run's data through the evaluation transform; for ``module:``: a blank input of the shape the
input spec gives, images ``(1, channels, size, size)`` and series ``(1, channels, length)``; for
other kinds of data declare ``feature_dim``). The last ``nn.Linear``'s ``out_features`` is not used:
the order modules are registered in is not the order they run in, and a guess that is wrong would
only show as a shape error deep in a method's head. Whatever the rule found, the module's first
forward is checked to give ``(N, D)`` (a one-line error if not).

timm: an adapter for ``timm.create_model(..., num_classes=0)`` is not here. timm 1.0.31 installs beside
torch 2.13.0 with ``--no-deps`` but does not import: it needs torchvision, and the torchvision wheels
reachable here (0.29.x) need torch >= 2.14 and fail to load their operators against 2.13. Where timm
imports, ``model.backbone: module:timm:create_model`` with ``model.options: {model_name: resnet18,
num_classes: 0, pretrained: false}`` works through this family as it is (timm models declare
``num_features``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import UsageError
from .registry import Family, register

PREFIX = "module:"
DECLARED = ("feature_dim", "num_features", "embed_dim")


@dataclass
class CustomOptions:
    options: dict = field(default_factory=dict)  # the factory's keyword arguments


def resolve_factory(name: str):
    """The callable ``module:package.path:factory`` names, or a one-line UsageError."""
    target = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(f"model.backbone {name!r} must be written module:package.path:factory")
    try:
        module = _import(module_name)
    except Exception as e:  # ImportError, or the package failing while it imports
        raise UsageError(
            f"model.backbone {name}: cannot import {module_name} ({type(e).__name__}: {_first(e)})"
        ) from None
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise UsageError(f"model.backbone {name}: {module_name} has no attribute {attr}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise UsageError(f"model.backbone {name}: {module_name}:{attr} is not callable")
    return factory


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        here = os.getcwd()
        top = module_name.split(".")[0]
        if e.name != top or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)  # the current folder, after everything installed (never shadowing it)
        return importlib.import_module(module_name)


def declared_dim(module: nn.Module) -> int | None:
    """The feature dimension ``module`` declares (see the module docstring), or None."""
    for attr in DECLARED:
        value = getattr(module, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def blank_input(input_spec: dict) -> torch.Tensor | None:
    """A zero model input of one sample, when the input spec gives its shape (images, series)."""
    if {"channels", "size"} <= set(input_spec):
        return torch.zeros(1, int(input_spec["channels"]), int(input_spec["size"]), int(input_spec["size"]))
    if {"channels", "length"} <= set(input_spec):
        return torch.zeros(1, int(input_spec["channels"]), int(input_spec["length"]))
    return None


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else "") or type(e).__name__


def _output_error(where: str, out, n: int, dim: int | None) -> UsageError | None:
    if not isinstance(out, torch.Tensor):
        return UsageError(f"{where} returns {type(out).__name__}, not a features tensor (N, D)")
    if out.ndim != 2 or out.shape[0] != n or (dim is not None and out.shape[1] != dim):
        want = f"({n}, {dim})" if dim is not None else f"({n}, D)"
        return UsageError(
            f"{where} maps a batch of {n} to features of shape {tuple(out.shape)}, not {want}; a backbone must "
            "return one feature vector per sample (pool and flatten inside it)"
        )
    return None


def adopt(module: nn.Module, example=None, where: str | None = None) -> nn.Module:
    """``module`` made a selfsup backbone: ``feature_dim`` set by the rule of the module docstring
    (``example``: a callable giving one sample of model input, for the one forward), a ``spec``
    (kept when it has one; else ``python:<class>``, which :func:`selfsup.load_encoder` cannot
    rebuild by itself), and a check of its first forward's output shape. Returns the module itself."""
    if not isinstance(module, nn.Module):
        raise UsageError(f"a backbone must be a torch.nn.Module, got {type(module).__name__}")
    where = where or f"the backbone {type(module).__qualname__}"
    dim = declared_dim(module)
    if dim is None:
        x = example() if example is not None else None
        if x is None:
            raise UsageError(
                f"{where}: cannot tell its feature dimension; set feature_dim on the module (an int: the D of its "
                "(N, D) output)"
            )
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                out = module(x.to(next(module.parameters(), x).device))
        except Exception as e:
            raise UsageError(
                f"{where} fails on one sample of shape {tuple(x.shape)} ({type(e).__name__}: {_first(e)})"
            ) from None
        finally:
            module.train(was_training)
        error = _output_error(where, out, len(x), None)
        if error is not None:
            raise error
        dim = int(out.shape[1])
    module.feature_dim = dim
    if not isinstance(getattr(module, "spec", None), dict):
        module.spec = {"name": f"python:{type(module).__module__}.{type(module).__qualname__}", "options": {}}
    if not getattr(module, "_selfsup_checked", False):
        module._selfsup_checked = True

        def check(mod, args, out):
            # The first forward only (of this module and of copies of it, as a momentum teacher): nothing is
            # left in the way of exports or compilation.
            mod._forward_hooks.pop(handle.id, None)
            x = args[0] if args else None
            n = len(x) if isinstance(x, torch.Tensor) else (out.shape[0] if isinstance(out, torch.Tensor) else 0)
            error = _output_error(where, out, n, mod.feature_dim)
            if error is not None:
                raise error

        handle = module.register_forward_hook(check)
    return module


def adopt_for_run(module: nn.Module, cfg) -> nn.Module:
    """:func:`adopt` with one sample of ``cfg``'s training data (through the modality's evaluation
    transform) for the forward, loaded only when the module declares no feature dimension."""
    if declared_dim(module) is not None or not isinstance(module, nn.Module):
        return adopt(module)

    def example():
        from ..data.sources import load_dataset
        from ..modalities import get_modality

        options = {**cfg.data.options, **({"target": cfg.data.target} if cfg.data.target else {})}
        data = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir, skip_bad=cfg.data.skip_bad, options=options)
        modality = get_modality(data.modality)
        first = data.rows("train")[:1] if hasattr(data, "rows") else data.train[:1]
        return modality.eval_transform(modality.input_spec(data, cfg))(first)

    return adopt(module, example)


def build(name: str, input_spec: dict, options: CustomOptions) -> nn.Module:
    factory = resolve_factory(name)
    kwargs = dict(options.options)
    try:
        takes_spec = "input_spec" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        takes_spec = False
    if takes_spec:
        kwargs.setdefault("input_spec", input_spec)
    try:
        module = factory(**kwargs)
    except TypeError as e:
        raise UsageError(
            f"model.backbone {name}: calling it with model.options {options.options} failed ({_first(e)})"
        ) from None
    if not isinstance(module, nn.Module):
        raise UsageError(f"model.backbone {name} returned {type(module).__name__}, not a torch.nn.Module")
    module.spec = {"name": name, "options": asdict(options)}
    return adopt(module, lambda: blank_input(input_spec), where=f"model.backbone {name}")


def parse(family: Family, given: dict, where: str = "model") -> CustomOptions:
    """``model.options`` (a mapping) as the family's options."""
    unknown = [k for k in given if k != "options"]
    if unknown:
        raise UsageError(
            f"unknown config key {where}.{unknown[0]} for a module: backbone; "
            f"its keyword arguments go in {where}.options"
        )
    options = given.get("options") or {}
    if not isinstance(options, dict):
        raise UsageError(f"{where}.options must be a mapping of the factory's keyword arguments, got {options!r}")
    return CustomOptions(dict(options))


class CustomFamily(Family):
    def parse_options(self, given: dict, where: str = "model") -> CustomOptions:
        return parse(self, given, where)


register(CustomFamily("custom", (), CustomOptions, build, (), prefix=PREFIX))
