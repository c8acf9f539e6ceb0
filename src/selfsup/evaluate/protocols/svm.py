"""``svm``: TS2Vec's classification protocol (Yue et al. 2022, Sec. 4.1; code ``tasks/_eval_protocols.py``
``fit_svm``): an RBF SVM (``gamma='scale'``) on the frozen instance representations, its C chosen by
5-fold cross-validation over {1e-4, 1e-3, ..., 1e4, inf} on the training split (at most 10,000
stratified samples; every fit of the search capped at 10^7 solver iterations, as the code's grid sets
``max_iter``, so a C = inf fit on data no boundary separates ends), or C = inf without a search when the
split is small (fewer than 50 samples or fewer than 5 per class); test accuracy, beside the same on
the raw series. For series runs (the protocol the series papers report); other modalities skip it.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import UsageError
from .base import EvalContext, Protocol, Row

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, float("inf"))
MAX_SAMPLES = 10_000
MAX_ITER = 10_000_000  # the code's grid: 'max_iter': [10000000]


def fit_svm(features: np.ndarray, labels: np.ndarray, seed: int = 0):
    """TS2Vec's ``fit_svm``: the fitted SVC and the chosen C (searched or not)."""
    try:
        from sklearn.model_selection import GridSearchCV, train_test_split
        from sklearn.svm import SVC
    except ImportError:
        raise UsageError("the svm protocol needs scikit-learn: pip install 'selfsup[report]'") from None
    classes = np.unique(labels).shape[0]
    n = features.shape[0]
    if n // classes < 5 or n < 50:  # the small-data rule: no search, C = inf
        return SVC(C=np.inf, gamma="scale").fit(features, labels), {"C": "inf", "searched": False}
    if n > MAX_SAMPLES:
        features, _, labels, _ = train_test_split(
            features, labels, train_size=MAX_SAMPLES, random_state=seed, stratify=labels
        )
    search = GridSearchCV(SVC(gamma="scale", max_iter=MAX_ITER), {"C": list(C_GRID)}, cv=5, n_jobs=1)
    search.fit(features, labels)
    return search.best_estimator_, {"C": _c_name(search.best_params_["C"]), "searched": True}


def _c_name(c: float) -> str:
    return "inf" if np.isinf(c) else f"{c:g}"


def svm_accuracy(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor, seed: int = 0):
    """Test accuracy of :func:`fit_svm` on ``train`` features, and its choice of C."""
    x_train = train.detach().double().cpu().numpy()
    x_test = test.detach().double().cpu().numpy()
    model, chosen = fit_svm(x_train, y_train.cpu().numpy(), seed)
    return float(model.score(x_test, y_test.cpu().numpy())), chosen


class SVM(Protocol):
    name = "svm"
    description = "TS2Vec's protocol: RBF SVM, C by 5-fold CV over 1e-4..1e4 and inf (series runs)"
    order = 40
    modalities = ("series",)

    def run(self, ctx: EvalContext) -> dict:
        modality = getattr(getattr(ctx.run, "modality", None), "name", None)
        if modality is not None and modality not in self.modalities:
            return {"svm": {"skipped": f"the svm protocol is for {', '.join(self.modalities)} runs"}}
        f, y = ctx.features, ctx.labels
        accuracy, chosen = svm_accuracy(f["train"], y["train"], f["test"], y["test"], ctx.seed)
        details = {"grid": [_c_name(c) for c in C_GRID], "folds": 5, **chosen}
        base = None
        if ctx.raw:
            base, chosen_raw = svm_accuracy(ctx.raw["train"], y["train"], ctx.raw["test"], y["test"], ctx.seed)
            details["C_raw"] = chosen_raw["C"]
        result = {"svm": details}
        ctx.headline(result, "svm_top1", accuracy, base)
        return result

    def rows(self, r: dict) -> list[Row]:
        if "svm_top1" not in r:
            return []
        d = r["svm"]
        return [Row(f"SVM (RBF, C={d.get('C')}, TS2Vec's protocol)", "top-1", r.get("svm_top1"), r.get("svm_top1_raw"))]
