"""The training step as one CUDA graph (``train.cuda_graph``).

A ResNet-18 BYOL step on a GPU launches over a thousand kernels, and the GPU waits for Python to
issue them (the H100 profile in BENCHMARKS.md: 28 ms of kernels against 58 ms of host time). A
CUDA graph records the step's kernels once and replays them with one launch. What the step needs
for that, :class:`StaticStep` provides:

* every number that changes per step is read on the device: the learning rates, the weight decay
  and the method's own numbers (a teacher's EMA weight, DINO's teacher temperature) come from a
  :class:`~selfsup.training.schedules.ScheduleTable` row selected by a device step counter, and the
  optimisers take them as tensors (:class:`~selfsup.optim.LARS`, :class:`~selfsup.optim.AdamW`);
* the batch is copied into one static input tensor, and the outputs (loss, features) are the
  graph's static tensors, read after each replay;
* the views draw from the run's generator, registered with the graph, so each replay draws new
  random numbers (the generator's offset advances by the graph's total);
* what :meth:`~selfsup.methods.base.Method.before_optimizer_step` does may change during a run
  (DINO's last layer is frozen for the first epoch): one graph per
  :meth:`~selfsup.methods.base.Method.step_phase`.

Each phase's first ``warmup`` steps run eagerly on a side stream (the optimiser's state is
created, cuDNN picks its algorithms), then the step is captured and replayed from then on. On a
device without CUDA graphs the same step runs eagerly: the tests check on the CPU that it gives
the losses of the ordinary step bit for bit.

Outside the graph: the online probes (their kNN ring buffer keeps a host pointer) and the loop's
logging. Not captured: several processes (DDP's gradient hooks) and methods whose step keeps state
on the host (``Method.capturable`` False): ``train.cuda_graph`` is refused for them in one line.
"""

from __future__ import annotations

import collections

import torch

from ..errors import UsageError
from .schedules import ScheduleTable
from .step import update_step


def check_capturable(cfg, method_cls, world_size: int) -> None:
    """Refuse ``train.cuda_graph`` where the step cannot be captured (one line, before training)."""
    if not cfg.train.cuda_graph:
        return
    if not method_cls.capturable:
        raise UsageError(
            f"train.cuda_graph: method {cfg.method} keeps state on the host in its step (queues, "
            "pointers or counters), so it cannot be captured; train it without train.cuda_graph"
        )
    if world_size > 1:
        raise UsageError("train.cuda_graph runs on one process for now; launch without torchrun or leave it off")


class StaticStep:
    """One optimisation step on static tensors: ``step(batch, global_step) -> (outputs, logs)``.

    ``s`` is the run's :class:`~selfsup.training.build.Setup` (its optimiser's groups are bound to
    the schedule table's tensors for the rest of the run); ``generator`` draws the views.
    """

    def __init__(self, s, generator: torch.Generator, warmup: int = 3, make_views=None):
        self.s, self.generator, self.warmup = s, generator, warmup
        # the views of the static batch; another function for a benchmark's ceiling (fixed views)
        self.make_views = make_views or (lambda batch: s.views(batch, generator, (s.ctx.rank, s.ctx.world_size)))
        self.table = ScheduleTable(s)
        self.table.bind(s.optimizer)
        self.capture = s.device.type == "cuda"
        s.autocast_cache = not self.capture  # no cached weight casts across a capture
        self.graphs: dict = {}  # phase -> (graph, static outputs)
        self.eager_steps: collections.Counter = collections.Counter()
        self.batch: torch.Tensor | None = None
        self.next_step: int | None = None

    @property
    def captured(self) -> bool:
        return bool(self.graphs)

    def __call__(self, batch: torch.Tensor, step: int) -> tuple[dict, dict]:
        s = self.s
        if self.next_step != step:  # the first step of this session (or after a jump)
            self.table.start_at(step)
        self.next_step = step + 1
        if self.batch is None or self.batch.shape != batch.shape:
            self.batch = torch.empty_like(batch)
            self.graphs.clear()
        self.batch.copy_(batch)
        phase = s.method.step_phase(step)
        logs = s.method.step_logs(step + 1)
        if not self.capture:
            return self._body(step), logs
        entry = self.graphs.get(phase)
        if entry is None and self.eager_steps[phase] < self.warmup:
            self.eager_steps[phase] += 1
            side = torch.cuda.Stream(s.device)
            side.wait_stream(torch.cuda.current_stream(s.device))
            with torch.cuda.stream(side):
                out = self._body(step)
            torch.cuda.current_stream(s.device).wait_stream(side)
            return out, logs
        if entry is None:
            entry = self.graphs[phase] = self._capture(step)
        graph, out = entry
        graph.replay()
        return out, logs

    def _body(self, step: int) -> dict:
        """Everything one step does on the device, in the order of the ordinary step."""
        s = self.s
        self.table.advance()
        out = update_step(s, self.make_views(self.batch), step)
        s.method.after_step_tensors(self.table.scalars())
        return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}

    def _capture(self, step: int):
        s = self.s
        graph = torch.cuda.CUDAGraph()
        register = getattr(graph, "register_generator_state", None)
        if register is not None and self.generator.device.type == "cuda":
            register(self.generator)
        s.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(s.device)
        with torch.cuda.graph(graph):
            out = self._body(step)
        return graph, out
