"""What the user sees while a run trains: a live progress bar on a terminal, one line per epoch
otherwise (CI logs, files). The training loop calls a reporter; it never prints itself."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class SilentReporter:
    def start(self, run_dir, setup, epoch, global_step): ...
    def step(self, epoch, step_in_epoch, global_step, loss, images_per_second): ...
    def epoch(self, epoch, record): ...
    def evaluating(self): ...
    def warn(self, message): ...
    def finish(self, summary): ...
    def close(self): ...


class ConsoleReporter(SilentReporter):
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = None
        self.live = self.console.is_terminal

    def start(self, run_dir, setup, epoch, global_step):
        cfg = setup.cfg
        self.epochs, self.spe = cfg.train.epochs, setup.loader.steps_per_epoch
        self.console.print(
            f"[bold]{cfg.method}[/] on [bold]{setup.data.name}[/] ({len(setup.data.train)} images, "
            f"{setup.data.location}) | {cfg.model.backbone} | batch {cfg.train.batch_size} | "
            f"{setup.device}{' bf16' if setup.amp_dtype else ''} | data on {setup.loader.placement}"
            f" | run folder {run_dir}",
            highlight=False,
        )
        if self.live:
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[ips]} img/s"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.task = self.progress.add_task(
                "train",
                total=self.epochs * self.spe,
                completed=global_step,
                epoch=epoch + 1,
                epochs=self.epochs,
                loss="-",
                ips="-",
            )
            self.progress.start()
        self._t0 = time.perf_counter()

    def step(self, epoch, step_in_epoch, global_step, loss, images_per_second):
        if self.progress:
            self.progress.update(
                self.task, completed=global_step, epoch=epoch + 1, loss=f"{loss:.4f}", ips=f"{images_per_second:,.0f}"
            )

    def epoch(self, epoch, record):
        knn = f" | knn {record['knn_top1']:.4f}" if record.get("knn_top1") is not None else ""
        if self.progress:
            self.progress.update(
                self.task,
                completed=epoch * self.spe,
                epoch=min(epoch + 1, self.epochs),
                loss=f"{record['loss']:.4f}",
                ips=f"{record['images_per_second']:,.0f}",
            )
            if knn:
                self.progress.console.print(f"epoch {epoch}{knn}")
        else:
            elapsed = time.perf_counter() - self._t0
            print(
                f"epoch {epoch}/{self.epochs} loss {record['loss']:.4f} "
                f"{record['images_per_second']:,.0f} img/s {elapsed:.0f}s{knn}",
                file=sys.stderr,
                flush=True,
            )

    def warn(self, message):
        self.console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    def evaluating(self):
        self.close()
        self.console.print("evaluating (kNN on frozen features)...", highlight=False)

    def close(self):
        if self.progress:
            self.progress.stop()
            self.progress = None
