"""Which data selfsup can read, picked by a spec string such as ``digits`` or ``folder:PATH``.

The source kinds belong to the modalities (:mod:`selfsup.modalities`); this module dispatches.
"""

from __future__ import annotations

from ..modalities import all_sources, find_source
from .base import Dataset


def source_kinds() -> list[str]:
    """How each source kind is written, e.g. ``["digits", "fashion-mnist", "folder:PATH", ...]``."""
    return list(dict.fromkeys(s.usage for _, s in all_sources()))


def load_dataset(
    spec: str,
    data_dir: str | None = None,
    skip_bad: bool = False,
    download: bool = True,
    options: dict | None = None,
    input_spec: dict | None = None,
) -> Dataset:
    """Load the dataset ``spec`` names. ``data_dir`` is where named datasets' files are looked for
    first, ``skip_bad`` leaves unreadable files out, ``download`` allows a download where a source
    has one; ``options`` are the source's own settings (``data.options``); ``input_spec`` is a
    trained encoder's, for sources that encode samples with what the encoder was trained on."""
    modality, source = find_source(spec)
    options = {**(options or {}), "data_dir": data_dir, "skip_bad": skip_bad, "download": download}
    if input_spec is not None:
        options["input_spec"] = input_spec
    data = source.load(spec, options)
    assert data.modality == modality.name, f"{spec} returned {data.modality} data from a {modality.name} source"
    return data


def describe_sources(data_dir: str | None = None) -> list[dict]:
    """One entry per source for ``selfsup data``; looks for files only, reads and downloads nothing."""
    return [entry for modality, source in all_sources() for entry in source.describe(data_dir)]
