"""A prepare killed part-way (SIGKILL, or Ctrl-C) continues where it stopped and ends byte-identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from imagefiles import store_bytes

from selfsup.modalities.image.prepare import prepare_folder

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the worker processes"),
    pytest.mark.slow,  # a real process killed part-way: seconds (the fast tier interrupts in-process)
]

S, CHUNK = 48, 2
# The child prepares with real worker processes. It pauses after each durable chunk so that the
# test can stop it part-way without racing a prepare that takes a fraction of a second; the
# chunks themselves are written by the real writer. The pause is long (the child is stopped in
# the first one, so it costs nothing).
CHILD = """
import signal, sys, time
# Ctrl-C as a shell-started process has it. An ignored SIGINT is inherited across exec, and a
# suite started as a background job of a non-interactive shell (`.ci/run &`) runs with SIGINT
# ignored from the start, which made the child sleep through the signal.
signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGINT}})
signal.signal(signal.SIGINT, signal.default_int_handler)
from selfsup.data import store
from selfsup.modalities.image.prepare import prepare_folder

append = store.StoreWriter.append
def append_then_pause(self, *args, **kwargs):
    append(self, *args, **kwargs)
    time.sleep(5)
store.StoreWriter.append = append_then_pause
prepare_folder(sys.argv[1], {size}, workers=2, out=sys.argv[2], progress=False, chunk_rows={chunk})
"""


def inputs_done(split_dir) -> int:
    try:
        return json.loads((split_dir / "progress.json").read_text())["inputs"]
    except (OSError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start_and_stop_part_way(photos, out, tmp_path, how: str) -> list[int]:
    """Run the child until its first chunk is durable, then stop it; returns its worker pids."""
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(size=S, chunk=CHUNK))
    child = subprocess.Popen(
        [sys.executable, str(script), str(photos), str(out)],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while inputs_done(out / "train") < CHUNK:
        assert child.poll() is None, child.stdout.read().decode()
        assert time.monotonic() < deadline, "the child wrote no chunk in 60 s"
        time.sleep(0.01)
    workers = children(child.pid)
    if how == "SIGKILL":
        os.kill(child.pid, signal.SIGKILL)  # the main process only, as the OOM killer or `kill -9 PID` would
    else:
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
    child.wait(timeout=30)
    assert child.returncode != 0, f"the child finished before the signal: {inputs_done(out / 'train')} inputs done"
    return workers


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_an_interrupted_prepare_continues_and_gives_the_same_store(photos, tmp_path, how):
    whole = tmp_path / "whole"
    prepare_folder(photos, S, workers=0, out=whole, progress=False, chunk_rows=CHUNK)

    cut = tmp_path / "cut"
    workers = start_and_stop_part_way(photos, cut, tmp_path, how)
    assert len(workers) == 2
    assert not (cut / "train" / "header.json").exists(), "stopped before the train split was complete"
    stopped_at = inputs_done(cut / "train")
    assert CHUNK <= stopped_at < 12

    # Workers of a killed prepare notice and exit instead of waiting on their queue forever.
    deadline = time.monotonic() + 10
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if running(pid)]
    for pid in left:  # do not leave them behind when this fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "worker processes outlived the prepare"

    samples = cut / "train" / "samples.bin"
    with open(samples, "rb") as old:  # held open: a restart's new file could not reuse its inode
        prepare_folder(photos, S, workers=2, out=cut, progress=False, chunk_rows=CHUNK)
        assert os.fstat(old.fileno()).st_ino == samples.stat().st_ino, "continued, not started again"
    for split in ("train", "test"):
        assert store_bytes(cut / split) == store_bytes(whole / split), split
