"""Everything a run is built from its config: data, views, model, optimiser and step counts."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .. import distributed
from ..backbones import backbone_for
from ..config import Config
from ..data.base import Dataset, training_subset
from ..data.loader import BatchLoader
from ..data.sources import load_dataset
from ..device import resolve_device
from ..methods import METHODS, build_method
from ..modalities import Modality, get_modality
from ..modalities.base import Views
from ..optim import build_optimizer
from .graph import check_capturable
from .monitor import OnlineEval


@dataclass
class Setup:
    """A run's parts. ``forward`` is what a step calls: the method, its DDP wrapper, or their
    compiled form; ``views`` draws the method's views of a batch (the modality's view maker)."""

    cfg: Config
    device: torch.device
    data: Dataset
    modality: Modality
    input_spec: dict  # the modality's description of what the model is fed (recorded in the encoder)
    loader: BatchLoader
    views: Views
    method: torch.nn.Module
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    input_dtype: torch.dtype  # what views enter the model as (float64 under fp64)
    total_steps: int
    warmup_steps: int
    peak_lr: float
    ctx: distributed.Context = distributed.Context()
    online: OnlineEval | None = None
    # autocast's cache of low-precision weight copies; off for a captured step, as PyTorch's CUDA
    # graph notes ask (selfsup.training.graph)
    autocast_cache: bool = True

    def autocast(self):
        """The mixed-precision context of a forward pass (bf16 on CUDA by default)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=self.autocast_cache)

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """A view as the model takes it: its dtype and memory format."""
        return x.to(self.input_dtype).contiguous(memory_format=self.memory_format)


def build(
    cfg: Config,
    device: torch.device | None = None,
    data: Dataset | None = None,
    backbone: torch.nn.Module | None = None,
) -> Setup:
    """Build a run from ``cfg``; ``data`` replaces loading ``cfg.data``, ``backbone`` replaces the
    one ``cfg.model`` names (any module mapping the modality's input to ``(N, D)`` features)."""
    ctx = distributed.context()
    device = device or resolve_device(cfg.train.device)
    if ctx.distributed and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)  # one GPU per process
        torch.cuda.set_device(device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if device.type == "cuda":  # the step's shapes never change, so timing cuDNN's algorithms once pays
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    torch.manual_seed(cfg.seed)
    data = data or load_dataset(
        cfg.data.name, data_dir=cfg.data.data_dir, skip_bad=cfg.data.skip_bad, options=_source_options(cfg)
    )
    if cfg.data.subset:
        data = training_subset(data, cfg.data.subset)
    modality = get_modality(data.modality)
    input_spec = modality.input_spec(data, cfg)
    views = modality.views(cfg.view_configs(), input_spec, data)
    batch_size = distributed.check_batch(cfg.train.batch_size, ctx)
    loader = BatchLoader(
        data.train, batch_size, device, cfg.data.placement, seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size
    )
    method = build_method(cfg, backbone if backbone is not None else backbone_for(cfg, input_spec))
    method_cls = METHODS[cfg.method]
    check_capturable(cfg, method_cls, ctx.world_size)
    sync_bn = cfg.train.sync_bn == "true" or (cfg.train.sync_bn == "auto" and method_cls.sync_bn)
    if ctx.distributed and sync_bn:
        method = distributed.convert_batchnorm(method, device.type)
    method = method.to(device)
    if cfg.train.precision == "fp64":  # for numerical checks (the distributed tests): float64 throughout
        method = method.double()
    channels_last = cfg.train.channels_last == "true" or (cfg.train.channels_last == "auto" and device.type == "cuda")
    memory_format = modality.memory_format(channels_last)
    if memory_format == torch.channels_last:
        method = method.to(memory_format=torch.channels_last)
    peak_lr = cfg.optim.lr * cfg.train.batch_size / 256
    o = cfg.optim
    optimizer = build_optimizer(
        o.name,
        method,
        peak_lr,
        o.weight_decay,
        o.momentum,
        o.lars_eta,
        o.exclude_bias_norm,
        o.betas,
        lars_trust=o.lars_trust,
        lars_clip_lr=o.lars_clip_lr,
        bias_lr_scale=o.bias_lr_scale,
        fixed=method.fixed_lr_parameters(),
        capturable=cfg.train.cuda_graph,
    )
    use_bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda")
    total = cfg.train.epochs * loader.steps_per_epoch
    method.configure(loader.steps_per_epoch, total)
    forward = method
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers (BatchNorm statistics, queues, centres) are kept identical by the methods and
        # global BatchNorm, so DDP need not broadcast them every step.
        forward = DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False
        )
    if cfg.train.compile:
        forward = torch.compile(forward)
    if ctx.rank:  # every rank drew the same initial weights; from here on their own random streams
        torch.manual_seed(cfg.seed + 1_000_003 * ctx.rank)
    online = None
    if cfg.eval.online and data.task == "classification":
        online = OnlineEval(
            method.encoder.feature_dim, data.train_labels.to(device), data.num_classes, cfg.eval.online_knn_size
        ).to(device)
    return Setup(
        cfg,
        device,
        data,
        modality,
        input_spec,
        loader,
        views,
        method,
        forward,
        optimizer,
        torch.bfloat16 if use_bf16 else None,
        memory_format,
        torch.float64 if cfg.train.precision == "fp64" else torch.float32,
        total,
        round(cfg.optim.warmup_epochs * loader.steps_per_epoch),
        peak_lr,
        ctx,
        online,
    )


def _source_options(cfg: Config) -> dict:
    options = dict(cfg.data.options)
    if cfg.data.target is not None:
        options["target"] = cfg.data.target
    return options
