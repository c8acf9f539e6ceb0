"""Data-parallel training with torchrun on the CPU (gloo): real processes, the bundled digits.

The contract under test (see selfsup.distributed): ``train.batch_size`` is the global batch, and
``w`` processes with ``batch_size / w`` images each compute what one process computes on the
whole batch: the same loss, the same parameters, the same online-probe state, up to float
summation order. A checkpoint written by two processes resumes in one.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable"),
    pytest.mark.slow,  # several processes, each training
]

# 128 training images, global batch 64: 2 steps an epoch; small heads; no per-epoch diagnostics.
# In float64: the runs add floats in different orders, and in float32 early training amplifies
# those rounding differences (a ReLU input near zero changes side) to ~1e-3 of some gradients
# within a few steps, which only loose tolerances would accept. In float64 they stay ~1e-14, so
# the comparison below is strict: a wrong gradient scale, a per-rank BatchNorm or a missing
# gather fails it by many orders of magnitude.
COMMON = [
    "data.subset=128",
    "train.batch_size=64",
    "train.log_every=1",
    "eval.diagnose_every=0",
    "optim.warmup_epochs=1",
    "train.checkpoint_every=1",
    "train.precision=fp64",
]
HEADS = {
    "byol": ["method_args.proj_hidden=64", "method_args.pred_hidden=64", "method_args.proj_dim=32"],
    "simclr": ["method_args.proj_hidden=64", "method_args.proj_dim=32"],
    "barlowtwins": ["method_args.proj_hidden=64", "method_args.proj_dim=64"],
    "vicreg": ["method_args.proj_hidden=64", "method_args.proj_dim=64"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    # One thread per process, here and in the reference, so float sums see the same blocking.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _args(method, out, sets, epochs=2):
    args = ["-m", "selfsup", "train", f"{method}-digits", "--epochs", str(epochs), "--out", str(out)]
    for s in COMMON + HEADS.get(method, []) + list(sets):
        args += ["--set", s]
    return args


def _single(*args, timeout=300):
    proc = subprocess.run([sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _torchrun(nproc, *args, timeout=300, extra=()):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        *extra,
        *args,
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)


def _step_losses(run: Path) -> list[float]:
    """The loss of every step (log_every is 1; the mean over ranks in a distributed run)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["event"] == "step"]


def _assert_close_states(a: dict, b: dict, what: str):
    assert a.keys() == b.keys()
    for k in a:
        if torch.is_floating_point(a[k]):
            scale = b[k].abs().max().item()
            err = (a[k] - b[k]).abs().max().item()
            assert err <= 1e-9 * scale + 1e-12, f"{what} {k}: max difference {err:.3g} at scale {scale:.3g}"
        elif isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), f"{what} {k}"


@pytest.mark.parametrize("method", ["byol", "simclr", "barlowtwins", "vicreg"])
def test_two_ranks_match_one_process_on_the_global_batch_and_resume_in_one(tmp_path, method):
    one, two = tmp_path / "one", tmp_path / "two"
    # One process, global batch 64: epoch 1, then resumed to epoch 2.
    _single(*_args(method, one, ["train.stop_after=1"]))
    one_epoch1 = _ckpt(one)
    _single("-m", "selfsup", "train", "--resume", str(one))
    # Two processes of 32 images each: epoch 1 ...
    _torchrun(2, *_args(method, two, ["train.stop_after=1"]))
    two_epoch1 = _ckpt(two)
    assert two_epoch1["global_step"] == one_epoch1["global_step"] == 2
    assert json.loads((two / "summary.json").read_text())["world_size"] == 2
    # The same model (BatchNorm statistics included), optimiser state, online probe and loss.
    _assert_close_states(two_epoch1["method"], one_epoch1["method"], "method")
    # The online probe and kNN saw the global batch's features in both runs.
    tensors = lambda state: {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}  # noqa: E731
    _assert_close_states(tensors(two_epoch1["online"]), tensors(one_epoch1["online"]), "online")
    assert two_epoch1["online"]["knn._extra_state"] == one_epoch1["online"]["knn._extra_state"]
    for group_a, group_b in zip(two_epoch1["optimizer"]["state"].values(), one_epoch1["optimizer"]["state"].values()):
        _assert_close_states(group_a, group_b, "optimizer")
    assert _step_losses(two) == pytest.approx(_step_losses(one)[:2], rel=1e-6)  # logged as float32
    assert torch.equal(two_epoch1["aug_rng"], one_epoch1["aug_rng"])  # the global batch's draws
    # ... then resumed by a single process: it continues the same run.
    _single("-m", "selfsup", "train", "--resume", str(two))
    a, b = _ckpt(two), _ckpt(one)
    assert a["global_step"] == b["global_step"] == 4
    _assert_close_states(a["method"], b["method"], "method after resume")
    summary = json.loads((two / "summary.json").read_text())
    assert summary["finished"] and summary["world_size"] == 1
    assert _step_losses(two) == pytest.approx(_step_losses(one), rel=1e-6)  # logged as float32


def test_two_machines_on_one_host_with_c10d_rendezvous(tmp_path):
    port, out = _free_port(), tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "selfsup-test",
        *_args("byol", out, [], epochs=1),
    ]
    nodes = [
        subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["world_size"] == 2 and summary["steps_per_epoch"] == 2
    assert (out / "encoder.json").is_file()


def _rank_pids(marker: str, rank: int) -> list[int]:
    """Worker processes of this test's job (their command line holds ``marker``) with ``RANK=rank``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and f"RANK={rank}".encode() in environ and b"LOCAL_RANK" in b" ".join(environ):
            pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_killing_one_rank_ends_the_job_with_an_error_not_a_hang(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        *_args("byol", out, ["train.dist_timeout=60"], epochs=200),
    ]
    job = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = out / "checkpoints" / "last.pt"  # written after every epoch (checkpoint_every=1)
    deadline = time.time() + 180
    while time.time() < deadline and job.poll() is None and not checkpoint.exists():
        time.sleep(0.1)
    assert checkpoint.exists(), job.stderr.read()[-3000:] if job.poll() is not None else "no checkpoint"
    victims = _rank_pids(str(out), 1)
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    start = time.time()
    _, err = job.communicate(timeout=120)  # well within the 60 s collective timeout plus start-up slack
    assert job.returncode != 0
    assert time.time() - start < 90
    assert "rank" in err.lower() and ("signal" in err.lower() or "sigkill" in err.lower() or "failed" in err.lower())
    # The checkpoint written before the failure is intact and resumable.
    ckpt = _ckpt(out)
    assert ckpt["global_step"] >= 2


def test_every_method_trains_under_ddp_with_identical_ranks(tmp_path):
    # One torchrun job trains each method (and DINO on a ViT) for an epoch on 2 processes; the loop
    # compares the ranks' parameters before its checkpoint and fails if they differ.
    from selfsup.methods import METHODS

    worker = Path(__file__).with_name("_dist_all_methods.py")
    proc = _torchrun(2, str(worker), str(tmp_path), *METHODS, "dino-vit", timeout=1800)
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = {(report["method"], report["rank"]) for report in reports}
    assert done == {(method, rank) for method in [*METHODS, "dino-vit"] for rank in (0, 1)}
    for method in [*METHODS, "dino-vit"]:
        summary = json.loads((tmp_path / method / "summary.json").read_text())
        assert summary["finished"] and summary["world_size"] == 2, method
