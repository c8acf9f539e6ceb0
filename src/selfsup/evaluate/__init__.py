"""Evaluation of frozen representations."""
from .features import extract_features, raw_pixel_features
from .knn import knn_predict, knn_top1

__all__ = ["extract_features", "raw_pixel_features", "knn_predict", "knn_top1"]
