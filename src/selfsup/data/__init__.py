"""Datasets as uint8 image tensors: bundled digits, Fashion-MNIST, image folders and numpy arrays."""
from .base import Dataset
from .idx import read_idx
from .sources import SOURCE_KINDS, describe_sources, load_dataset

__all__ = ["Dataset", "SOURCE_KINDS", "describe_sources", "load_dataset", "read_idx"]
