"""k-nearest-neighbour classification on frozen features.

Weighted kNN (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", Sec. 3.4): features are L2-normalised, the k most cosine-similar training
features vote for their class with weight ``exp(s / T)``; k=200 and T=0.1 is the protocol of
the peer libraries' tables. ``weighted=False`` gives the plain majority vote.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    weighted: bool = True,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predicted labels for ``test_features`` (all tensors on one device)."""
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    labels = train_labels.to(bank.device)
    preds = []
    for start in range(0, len(test_features), chunk_size):
        query = F.normalize(test_features[start : start + chunk_size].float().to(bank.device), dim=1)
        sims, idx = (query @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp() if weighted else torch.ones_like(sims)
        votes = torch.zeros(len(query), num_classes, device=bank.device)
        votes.scatter_add_(1, labels[idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_top1(train_features, train_labels, test_features, test_labels, **kwargs) -> float:
    preds = knn_predict(train_features, train_labels, test_features, **kwargs)
    return (preds.cpu() == test_labels.cpu()).float().mean().item()
