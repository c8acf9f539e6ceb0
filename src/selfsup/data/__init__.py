"""Data of any modality: the :class:`Dataset` record and :class:`Rows` (:mod:`.base`), the source
dispatch (:mod:`.sources`: ``load_dataset``, ``describe_sources``), the batch loader
(:mod:`.loader`) and the memory-mapped store that prepared data lives in (:mod:`.store`)."""

from .base import Dataset, Rows, cache_root, training_subset

_SOURCES = ("describe_sources", "load_dataset", "source_kinds")


def __getattr__(name: str):
    # The dispatch imports the modalities, whose sources import this package's base: loaded on first
    # use rather than here, so that importing selfsup.data.base never goes round in a circle.
    if name in _SOURCES:
        from . import sources

        return getattr(sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Dataset", "Rows", "cache_root", "training_subset", *_SOURCES]
