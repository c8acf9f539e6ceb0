"""Online evaluation during pretraining: a linear probe and a kNN on detached features.

As in solo-learn (da Costa et al. 2022, JMLR) and the SimCLR/BYOL code bases: a linear
classifier is trained alongside the encoder, on the backbone features of each training batch
*detached* from the graph, with its own optimiser, so it can never change the encoder's
gradients or its optimiser state; its running top-1 (measured on each batch before the probe
steps on it) tracks how linearly separable the representation is while it trains. The kNN
keeps a ring buffer of recent detached features and labels and classifies new ones against it
with the weighted vote of :mod:`selfsup.evaluate.knn` (Wu et al. 2018).

Intended use in a training loop (training batches carry indices, labels come from the dataset)::

    probe = OnlineProbe(backbone.feature_dim, data.num_classes).to(device)
    knn = OnlineKNN(backbone.feature_dim, size=4096).to(device)
    for idx, views in batches:                   # idx: the dataset indices of the batch
        h = backbone(views[0])                    # features the method computes anyway
        loss = method_loss(...)
        loss.backward(); optimizer.step()         # the encoder's step, untouched by the probe
        y = data.train_labels[idx].to(device)
        probe.step(h, y)                          # detaches h, steps its own optimiser
        knn.score(h, y)                           # scores h against the buffer, then stores it
    # at the end of an epoch:
    log(online_linear_top1=probe.accuracy(), online_knn_top1=knn.accuracy())
    probe.reset_accuracy(); knn.reset_accuracy()

Features of augmented views make both numbers pessimistic next to the offline protocols on
clean images; they are for watching trends, the offline ones for reporting.

The probe is an ``nn.Module``: its weights *and* its optimiser state and counters are in its
``state_dict`` (via ``get_extra_state``), so a checkpoint of a module holding it resumes it exactly.
Features from a mixed-precision forward are cast to float32 first.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .knn import knn_predict
from .linear import threads_for


class _RunningAccuracy(nn.Module):
    """Counters of correct and seen predictions on the device (no host sync while counting), read
    by :meth:`accuracy` and cleared by :meth:`reset_accuracy`, e.g. once an epoch."""

    def __init__(self):
        super().__init__()
        for name in ("correct", "seen"):
            self.register_buffer(name, torch.zeros((), dtype=torch.long), persistent=False)

    def count(self, pred: torch.Tensor, labels: torch.Tensor) -> None:
        self.correct += (pred == labels.to(pred.device)).sum()
        self.seen += len(labels)

    def accuracy(self) -> float | None:
        """Running top-1 since the last :meth:`reset_accuracy` (None before any prediction)."""
        seen = int(self.seen)
        return int(self.correct) / seen if seen else None

    def reset_accuracy(self) -> None:
        self.correct.zero_()
        self.seen.zero_()

    def counters(self) -> dict:
        return {"correct": int(self.correct), "seen": int(self.seen)}

    def set_counters(self, state: dict) -> None:
        for name in ("correct", "seen"):
            getattr(self, name).fill_(state[name])


class OnlineProbe(_RunningAccuracy):
    """A linear classifier trained online on detached features with its own AdamW optimiser.

    The features go through a non-affine BatchNorm first (running statistics, as solo-learn and
    MAE's probe do), which stands in for the standardisation of the offline protocol while the
    feature distribution keeps moving.
    """

    def __init__(self, feature_dim: int, num_classes: int, lr: float = 1e-3, weight_decay: float = 1e-4):
        super().__init__()
        self.norm = nn.BatchNorm1d(feature_dim, affine=False)
        self.linear = nn.Linear(feature_dim, num_classes)
        self.num_classes = num_classes
        self.optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(features.detach().float()))

    def step(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a batch; returns the probe's cross-entropy (a detached 0-d
        tensor: no host sync, so it can run inside a training step).

        The batch is scored before the step (so the running accuracy is an honest online,
        never-trained-on estimate). Runs with gradients on even inside ``torch.no_grad()`` and
        outside any autocast, and leaves the caller's graph alone: ``features`` is detached.
        """
        labels = labels.to(features.device)
        was_training = self.training
        self.train()
        try:  # one CPU thread for these tiny operations (see threads_for); no effect on a GPU
            with threads_for(features), torch.enable_grad(), torch.autocast(features.device.type, enabled=False):
                logits = self(features)
                loss = F.cross_entropy(logits, labels)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        finally:
            self.train(was_training)
        self.count(logits.detach().argmax(1), labels)
        return loss.detach()

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return self(features).argmax(1)
        finally:
            self.train(was_training)

    def get_extra_state(self):
        return {"optimizer": copy.deepcopy(self.optimizer.state_dict()), **self.counters()}

    def set_extra_state(self, state) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.set_counters(state)


class OnlineKNN(_RunningAccuracy):
    """Weighted kNN against a ring buffer of the last ``size`` detached (features, labels).

    :meth:`update` adds a batch; :meth:`predict` classifies features against the buffer;
    :meth:`score` does both the solo-learn way (score the batch against what was stored before,
    then store it), accumulating a running top-1 read by :meth:`accuracy`.
    """

    def __init__(self, feature_dim: int, size: int = 4096, k: int = 20, temperature: float = 0.07):
        super().__init__()
        self.size, self.k, self.temperature = size, k, temperature
        self.register_buffer("bank", torch.zeros(size, feature_dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        # Write position and fill level are host integers (known without asking the device, so
        # no host sync in a step); checkpointed through get_extra_state.
        self.ptr, self.filled = 0, 0

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        f = F.normalize(features.detach().float(), dim=1)[-self.size :]
        y = labels.to(f.device)[-self.size :]
        pos = (self.ptr + torch.arange(len(f), device=f.device)) % self.size
        self.bank[pos] = f.to(self.bank.dtype)
        self.labels[pos] = y
        self.ptr = (self.ptr + len(f)) % self.size
        self.filled = min(self.size, self.filled + len(f))

    @torch.no_grad()
    def predict(self, features: torch.Tensor, num_classes: int | None = None) -> torch.Tensor | None:
        n = self.filled
        if n == 0:
            return None
        # The ring fills from row 0, so the first ``filled`` rows are the valid ones.
        return knn_predict(
            self.bank[:n],
            self.labels[:n],
            features.detach().float(),
            k=min(self.k, n),
            temperature=self.temperature,
            num_classes=num_classes,
        )

    @torch.no_grad()
    def score(self, features: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> None:
        with threads_for(self.bank):
            self._score(features, labels, num_classes)

    def _score(self, features, labels, num_classes):
        pred = self.predict(features, num_classes)
        if pred is not None:
            self.count(pred, labels)
        self.update(features, labels)

    def get_extra_state(self):
        return {"ptr": self.ptr, "filled": self.filled, **self.counters()}

    def set_extra_state(self, state) -> None:
        self.ptr, self.filled = state["ptr"], state["filled"]
        self.set_counters(state)
