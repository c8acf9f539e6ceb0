"""Evaluation of frozen representations: the algorithms (kNN, linear probes, clustering,
fine-tuning, diagnostics, online probes), the protocols built on them (:mod:`.protocols`) and the
evaluation of a run folder (:mod:`.run`)."""

from .cluster import ari, cluster_accuracy, cluster_eval, kmeans, linear_assignment, nmi
from .diagnostics import alignment, collapse_alarm, covariance_spectrum, diagnose, normalized_std, rankme, uniformity
from .features import extract_features, raw_features
from .knn import knn_predict, knn_top1
from .linear import fit_linear, linear_probe, standardize, stratified_split
from .lowshot import balanced_subset, lowshot_probe
from .online import OnlineKNN, OnlineProbe

__all__ = [
    "extract_features",
    "raw_features",
    "knn_predict",
    "knn_top1",
    "fit_linear",
    "linear_probe",
    "standardize",
    "stratified_split",
    "balanced_subset",
    "lowshot_probe",
    "kmeans",
    "cluster_eval",
    "cluster_accuracy",
    "nmi",
    "ari",
    "linear_assignment",
    "diagnose",
    "collapse_alarm",
    "rankme",
    "covariance_spectrum",
    "alignment",
    "uniformity",
    "normalized_std",
    "OnlineProbe",
    "OnlineKNN",
]
