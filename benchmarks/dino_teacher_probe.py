"""A DINO run's student and teacher backbones under kNN and the linear probe, the teacher with its own
BatchNorm statistics (what ``eval_teacher: true`` exports) and with the student's (the export before
issue 17's fix 5), on Fashion-MNIST's full splits.

    python -m benchmarks.dino_teacher_probe RUN_DIR      # e.g. runs/fmnist-subset-after/dino
"""

from __future__ import annotations

import argparse
import copy
import json

import torch

from selfsup.data.sources import load_dataset
from selfsup.encoder import load_encoder, preprocess_fn
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.knn import knn_top1
from selfsup.evaluate.linear import linear_probe

STATS = ("running_mean", "running_var", "num_batches_tracked")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    exported = load_encoder(args.run)
    state = torch.load(f"{args.run}/checkpoints/last.pt", map_location="cpu", weights_only=False)["method"]
    student = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    teacher = {k.removeprefix("teacher.net.0."): v for k, v in state.items() if k.startswith("teacher.net.0.")}
    variants = {
        "student": student,
        "teacher, its own statistics": teacher,
        "teacher, the student's statistics": {k: student[k] if k.endswith(STATS) else v for k, v in teacher.items()},
    }
    data = load_dataset("fashion-mnist")
    transform = preprocess_fn(exported)
    for name, weights in variants.items():
        enc = copy.deepcopy(exported)
        getattr(enc, "backbone", enc).load_state_dict(weights, strict=True)
        enc.eval()
        train = extract_features(enc, data.train, transform, 512, "cpu")
        test = extract_features(enc, data.test, transform, 512, "cpu")
        knn = knn_top1(train, data.train_labels, test, data.test_labels, k=200, temperature=0.1)
        linear = linear_probe(train, data.train_labels, test, data.test_labels)["top1"]
        print(json.dumps({"variant": name, "knn_top1": round(float(knn), 4), "linear_top1": round(float(linear), 4)}))


if __name__ == "__main__":
    main()
