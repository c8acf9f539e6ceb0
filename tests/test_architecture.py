"""The package's shape, read from its source: no import cycles (lazy imports inside functions
included), and the modality seam holds: the training loop, the losses, the generic methods and
the evaluation protocols import nothing that knows images."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from selfsup.methods import METHODS

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "selfsup"

# What knows images: the image modality, the image backbones.
IMAGE_SPECIFIC = ("selfsup.modalities.image", "selfsup.backbones.resnet", "selfsup.backbones.vit")
# What must not: these packages and modules (the methods are checked per method below).
MODALITY_FREE = (
    "selfsup.training",
    "selfsup.losses",
    "selfsup.evaluate.protocols",
    "selfsup.evaluate.run",
    "selfsup.evaluate.features",
    "selfsup.data.loader",
    "selfsup.data.base",
    "selfsup.methods.base",
    "selfsup.methods.parts",
    "selfsup.config",
    "selfsup.encoder",
    "selfsup.report",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def imports(name: str) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (top level and inside functions),
    resolved to module names; ``from pkg import sub`` counts as importing ``pkg.sub`` when that is
    a module."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [(module, a.name) for a in node.names]
        else:
            continue
        for module, member in targets:
            if not module.startswith("selfsup"):
                continue
            if member and f"{module}.{member}" in MODULES:
                found.add(f"{module}.{member}")
            elif module in MODULES:
                found.add(module)
    found.discard(name)
    return found


def test_the_package_has_no_import_cycles():
    graph = {name: imports(name) for name in MODULES}
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def _image_imports(name: str) -> set[str]:
    return {m for m in imports(name) if m.startswith(IMAGE_SPECIFIC)}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(MODALITY_FREE)))
def test_generic_modules_import_nothing_image_specific(name):
    assert _image_imports(name) == set()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_methods_for_every_modality_import_nothing_image_specific(method):
    cls = METHODS[method]
    if cls.modalities is not None and set(cls.modalities) == {"image"}:
        pytest.skip(f"{method} is an image method")
    assert _image_imports(cls.__module__) == set()


def test_the_checks_would_see_an_image_import():
    # The checks above can fail: the image modality's own modules do import image code.
    assert _image_imports("selfsup.modalities.image.report")
    assert "selfsup.modalities.image.views" in imports("selfsup.modalities.image.recipes")


def test_relative_imports_inside_the_package():
    absolute = [
        name
        for name in MODULES
        if any(
            isinstance(n, ast.ImportFrom) and not n.level and (n.module or "").startswith("selfsup")
            for n in ast.walk(ast.parse(MODULES[name].read_text()))
        )
    ]
    assert absolute == []
