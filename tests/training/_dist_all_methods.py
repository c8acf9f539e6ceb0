"""Worker for tests/test_distributed.py: under torchrun, train every method for one short epoch on
small real data of its modality (digits; breast-cancer for table methods; GunPoint for series
methods) with 2 processes (DDP, gloo), so a method that breaks under DDP (an unused parameter, a
gather of mismatched shapes, parameters that drift apart between ranks, which the loop checks
before every checkpoint) fails the job.

    python -m torch.distributed.run --nproc_per_node 2 tests/_dist_all_methods.py OUT_DIR [METHOD ...]
"""

import json
import os
import sys
from pathlib import Path

import torch

import selfsup
from selfsup.config import build_config, recipe_names
from selfsup.methods import METHODS

SMALL_DATA = ("digits", "breast-cancer", "ucr")  # each modality's smallest shipped recipe data


def main() -> None:
    out = Path(sys.argv[1])
    methods = sys.argv[2:] or list(METHODS)
    torch.set_num_threads(1)
    for method in methods:
        shipped = set(recipe_names())
        candidates = ["dino-vit-digits"] if method == "dino-vit" else [f"{method}-{d}" for d in SMALL_DATA]
        recipe = next(r for r in candidates if r in shipped)
        cfg = build_config(
            recipe, ["data.subset=64", "train.batch_size=32", "train.log_every=1", "eval.diagnose_every=0"], epochs=1
        )
        summary = selfsup.train(cfg, out=out / method)  # checks that every rank holds the same parameters
        # One write of the whole line: both ranks share the pipe, and print() writes the line and its
        # newline separately, so two ranks' lines could run together (seen once on a loaded machine).
        rank = int(os.environ.get("RANK", 0))
        sys.stdout.write(json.dumps({"method": method, "rank": rank, "finished": summary.get("finished")}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
