"""Typed configuration: dataclasses, YAML recipes, ``--set key=value`` overrides, validation.

A config is resolved in layers, each validated key by key (an unknown key or a value of the wrong
type is a :class:`~selfsup.errors.UsageError` naming the valid keys, closest first):

1. the dataclass defaults below;
2. a recipe: a YAML file path, or the name of one shipped in ``selfsup/recipes``; with no recipe,
   the shipped ``<method>-<data>`` recipe when there is one;
3. ``--set a.b.c=value`` overrides (values parsed as YAML: ``--set optim.lr=0.5``,
   ``--set augment.common.crop_scale=[0.2,1.0]``, ``--set augment.views.1.solarize_p=0.3``);
4. the explicit command-line flags (``--epochs``, ``--batch-size`` ...).

The resolved config (with the method's full view recipes and arguments written out) is saved as
``config.yaml`` in the run folder and loads back to the same config.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .backbones import FAMILIES, family_of
from .coerce import coerce_fields, coerce_value
from .errors import UsageError, unknown
from .loggers import check_loggers
from .methods import METHODS, check_fits
from .modalities import Modality, modality_of
from .optim import check_optim


@dataclass
class DataConfig:
    name: str = "digits"  # a source: digits | fashion-mnist | folder:PATH | ... (`selfsup data`)
    data_dir: str | None = None
    skip_bad: bool = False  # folder: skip unreadable images instead of stopping
    placement: str = "auto"  # auto | device | host: where the training split lives (selfsup.data.loader)
    subset: int = 0  # train on a fixed random subset of this many samples (0: all)
    target: str | None = None  # the label column of a table, for evaluation only
    # the source's own settings: a table's column types; a folder's store (size, workers, store)
    options: dict = field(default_factory=dict)


@dataclass
class AugmentConfig:
    size: int = 32  # images: the view size of the method's default views
    channels: int = 3  # images: channels the model sees; grayscale data is replicated to 3
    common: dict = field(default_factory=dict)  # view-setting overrides applied to every view
    views: list = field(default_factory=list)  # per-view overrides, in order


@dataclass
class ModelConfig:
    """``backbone`` and its family's own options (``model.stem`` for ResNets, ``model.patch_size``
    for ViTs ...; see :mod:`selfsup.backbones`), read as attributes of this section."""

    backbone: str = "auto"  # a backbone name; auto: the data's modality's default
    options: Any = None  # the family's options dataclass

    def __getattr__(self, name: str):
        options = self.__dict__.get("options")
        if options is not None and name in {f.name for f in fields(options)}:
            return getattr(options, name)
        raise AttributeError(f"model has no option {name!r}")

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, **(asdict(self.options) if self.options is not None else {})}


@dataclass
class OptimConfig:
    name: str = "lars"  # sgd | lars | adamw
    lr: float = 1.0  # per 256 images: the peak is lr * batch_size / 256
    weight_decay: float = 1e-5
    momentum: float = 0.9
    lars_eta: float = 0.001  # the trust coefficient of the LARS papers (You et al.; BYOL; Barlow Twins)
    lars_trust: str = field(default="update", metadata={"legacy": "lars"})  # update (BYOL's code) | lars (LARC)
    lars_clip_lr: bool = False  # LARC's clipping of the trust ratio at the lr (solo-learn's clip_lars_lr)
    exclude_bias_norm: bool = True  # biases and norms: no weight decay, no LARS (SwAV's code: false)
    bias_lr_scale: float = 1.0  # lr multiplier for biases and norms (Barlow Twins' code: 0.0048 / 0.2)
    warmup_epochs: float = 10.0
    schedule: str = "cosine"  # cosine | infinite (continual pretraining: warm-up, cool-down, constant, anneal)
    cooldown_epochs: float = 10.0  # infinite: cosine from the peak to constant_lr_ratio of it over these
    constant_lr_ratio: float = 0.25  # infinite: the constant phase's rate, a fraction of the peak
    anneal_epochs: float = 0.0  # infinite: the last epochs anneal to final_lr_ratio (0: no anneal)
    final_lr_ratio: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only (MAE: 0.9, 0.95)
    final_weight_decay: float = -1.0  # >= 0: cosine schedule weight_decay -> this (DINO: 0.04 -> 0.4)
    clip_grad: float = 0.0  # > 0: clip gradients to this norm
    clip_grad_mode: str = "global"  # global norm | per_param (each parameter's own norm: DINO, SiT, GMML)


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 256
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32 | fp64 (numerical checks)
    channels_last: str = "auto"  # auto (on CUDA) | true | false
    compile: bool = False
    cuda_graph: bool = False  # capture the whole step as one CUDA graph (selfsup.training.graph); eager on a CPU
    cudnn_benchmark: bool = True  # CUDA: let cuDNN time its convolution algorithms for the fixed step shapes
    log_every: int = 50  # steps between logged metrics (one host sync each)
    checkpoint_every: int = 10  # epochs between checkpoints (and always at the end)
    checkpoint_minutes: float = 0.0  # > 0: also a checkpoint every this many minutes, mid-epoch if need be
    knn_every: int = 0  # epochs between online kNN evaluations (0: only at the end)
    stop_after: int = 0  # stop this invocation after N epochs; continue with --resume
    init_from: str | None = None  # a finished run whose weights start this one (continual pretraining)
    threads: int = 0  # CPU threads for torch (0: torch's default)
    sync_bn: str = "auto"  # several processes: BatchNorm over the global batch (auto: as the paper)
    dist_timeout: float = 600.0  # seconds before a collective waiting on a lost process fails
    loggers: list = field(default_factory=lambda: ["jsonl"])  # jsonl (always) | csv | tensorboard | mlflow


@dataclass
class EvalConfig:
    knn_k: int = 200
    knn_t: float = 0.1
    batch_size: int = 1024
    diagnose_every: int = 1  # epochs between collapse diagnostics on a fixed probe batch (0: never)
    probe_size: int = 512  # images in the probe batch
    min_rank_fraction: float = 0.02  # collapse alarm: RankMe below this fraction of min(batch, dim)
    min_std_ratio: float = 0.1  # collapse alarm: normalised-embedding std x sqrt(d) below this
    stop_on_collapse: bool = False  # stop the run (after a checkpoint) when the alarm rings
    online: bool = True  # online linear probe and kNN on the training batches' features
    online_knn_size: int = 4096  # feature bank of the online kNN


CONFIG_VERSION = 2  # 1: before the faithfulness fixes (fef551e); keys added since read with their legacy values


@dataclass
class Config:
    config_version: int = CONFIG_VERSION
    method: str = "byol"
    method_args: dict = field(default_factory=dict)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # resolved by _resolve_model
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        tree = {f.name: getattr(self, f.name) for f in fields(self)}
        tree = {
            k: (v.to_dict() if isinstance(v, ModelConfig) else asdict(v) if dataclasses.is_dataclass(v) else v)
            for k, v in tree.items()
        }
        return copy.deepcopy(tree)

    @property
    def modality(self) -> Modality:
        """The kind of data ``data.name`` is (from the spec alone; nothing is read)."""
        return modality_of(self.data.name)

    def view_configs(self) -> list:
        """The resolved views, as the modality's view settings dataclasses."""
        vc = self.modality.view_config
        return [vc(**coerce_fields(vc, v, "augment.views")) for v in self.augment.views]


# ----------------------------------------------------------------------------------------- recipes


def recipe_names() -> list[str]:
    folder = resources.files("selfsup") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_recipe(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UsageError(
                f"recipe file {name_or_path} does not exist; give a YAML file or one of: " + ", ".join(recipe_names())
            )
        text = path.read_text()
    else:
        names = recipe_names()
        if name_or_path not in names:
            raise unknown("recipe", name_or_path, names)
        text = (resources.files("selfsup") / "recipes" / f"{name_or_path}.yaml").read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"recipe {name_or_path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"recipe {name_or_path} must be a YAML mapping of config sections")
    return data


# ----------------------------------------------------------------------------------------- merging


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.5"`` -> (["optim", "lr"], 0.5)."""
    if "=" not in item:
        raise UsageError(f"--set expects key=value (for example optim.lr=0.5), got {item!r}")
    key, _, raw = item.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _set_path(tree: dict, path: list[str], value: Any, where: str) -> None:
    """Set ``tree[path]``, checking each key exists (list indices and free-form dicts allowed)."""
    node = tree
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        dotted = ".".join(path[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit():
                raise UsageError(f"{where}: {dotted} must be a list index")
            i = int(key)
            while len(node) <= i:  # views beyond the recipe's are new override dicts
                node.append({})
            if last:
                node[i] = value
            node = node[i]
            continue
        if not isinstance(node, dict):
            raise UsageError(f"{where}: {'.'.join(path[:depth])} has no keys")
        if last:
            node[key] = value
        else:
            node = node.setdefault(key, {})


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


# ------------------------------------------------------------------------------------- validation


def _resolve_model(tree: Any, modality: Modality, legacy: bool = False) -> ModelConfig:
    """The ``model`` section: ``backbone`` (``auto``: the modality's default) and the options of
    its family, checked against that family. ``legacy``: a run folder's config written before
    backbones had families, which lists every family's options; the others' are dropped."""
    tree = dict(tree or {}) if isinstance(tree, dict) or tree is None else tree
    if not isinstance(tree, dict):
        raise UsageError(f"config section model must be a mapping, got {tree!r}")
    name = coerce_value(tree.pop("backbone", "auto"), str, "model.backbone")
    if name == "auto":
        name = modality.default_backbone
    family = family_of(name)
    if family.prefix:  # module:package.path:factory, the user's own backbone: importable, for any modality
        from .backbones.custom import resolve_factory

        resolve_factory(name)
    elif modality.name not in family.modalities:
        fitting = [n for f in FAMILIES.values() if modality.name in f.modalities for n in f.members]
        raise UsageError(
            f"backbone {name} takes {', '.join(family.modalities)} data, not {modality.name}; "
            f"backbones for {modality.name} data: {', '.join(fitting)}"
        )
    own = {f.name for f in fields(family.options)}
    for key in [k for k in tree if k not in own]:
        other = next((f for f in FAMILIES.values() if key in {g.name for g in fields(f.options)}), None)
        if other is None:
            continue  # an unknown key: parse_options names it
        # A shipped recipe's ResNet options under --set model.backbone=vit-tiny, or a run config
        # written when the model section listed every family's options: ignored while they are
        # that family's defaults (they would change nothing), an error otherwise.
        default = getattr(other.options(), key)
        if legacy or tree[key] == default or (isinstance(default, tuple) and list(default) == tree[key]):
            del tree[key]
        else:
            raise UsageError(
                f"model.{key} is an option of the {other.name} backbones, not of {name}; "
                f"drop it or choose a {other.name} backbone"
            )
    return ModelConfig(name, family.parse_options(tree))


def _resolve_method(cfg: Config, named: frozenset[str] = frozenset()) -> None:
    """Fill in the method's arguments and the modality's views for its plan, and check both.
    ``named``: the dotted keys the user set by name (flags, ``--set``), for the modality's check."""
    if cfg.method not in METHODS:
        raise unknown("method", cfg.method, METHODS)
    method = METHODS[cfg.method]
    modality = cfg.modality
    check_fits(method, modality)
    given = dict(cfg.method_args)
    if cfg.config_version < CONFIG_VERSION:
        given = {**legacy_defaults(method.Args), **given}
    args = method.Args(**coerce_fields(method.Args, given, f"method_args ({cfg.method})"))
    cfg.method_args = asdict(args)
    defaults = modality.default_views(method.view_plan(args), cfg.augment)
    if len(cfg.augment.views) > len(defaults):
        raise UsageError(
            f"augment.views has {len(cfg.augment.views)} entries but {cfg.method} uses {len(defaults)} views"
        )
    vc = modality.view_config
    common = coerce_fields(vc, cfg.augment.common, "augment.common")
    views = []
    for i, view in enumerate(defaults):
        own = cfg.augment.views[i] if i < len(cfg.augment.views) else {}
        own = coerce_fields(vc, own, f"augment.views.{i}")
        views.append(asdict(dataclasses.replace(view, **{**common, **own})))
    cfg.augment.views = views
    cfg.augment.common = {}
    modality.check_config(cfg, named)


def _config_from_tree(tree: dict, legacy: bool = False) -> Config:
    """A Config from a merged tree: every section checked, the model against the data's modality."""
    tree = dict(tree)
    model = tree.pop("model", None)
    cfg = Config(**coerce_fields(Config, tree, ""))
    cfg.model = _resolve_model(model, cfg.modality, legacy)
    return cfg


def build_config(recipe: str | None = None, sets: list[str] = (), **flags: Any) -> Config:
    """Resolve a config from a recipe, ``--set`` overrides and command-line flags.

    ``flags`` use the CLI's names: method, data, epochs, batch_size, device, data_dir.
    """
    tree = Config().to_dict()
    flags = {k: v for k, v in flags.items() if v is not None}
    if recipe is None:  # the shipped recipe for this method and data, when there is one
        guess = f"{flags.get('method', 'byol')}-{flags.get('data', 'digits')}"
        recipe = guess if guess in recipe_names() else None
    recipe_tree = read_recipe(recipe) if recipe is not None else {}
    parsed = [parse_set(item) for item in sets]
    # The method's own optimiser defaults (its paper's) sit between the generic defaults and the recipe.
    method = flags.get("method") or next((v for p, v in reversed(parsed) if p == ["method"]), None)
    method = method or recipe_tree.get("method") or tree["method"]
    if isinstance(method, str) and method in METHODS:
        _merge(tree["optim"], METHODS[method].optim_defaults)
    _merge(tree, recipe_tree)
    for path, value in parsed:
        _set_path(tree, path, value, "--set")
    placements = {
        "method": ("method",),
        "data": ("data", "name"),
        "data_dir": ("data", "data_dir"),
        "epochs": ("train", "epochs"),
        "batch_size": ("train", "batch_size"),
        "device": ("train", "device"),
        "init_from": ("train", "init_from"),
    }
    for name, value in flags.items():
        if name not in placements:
            raise AssertionError(f"unknown flag {name}")
        _set_path(tree, list(placements[name]), value, f"--{name.replace('_', '-')}")
    named = frozenset([".".join(p) for p, _ in parsed] + [".".join(placements[name]) for name in flags])
    cfg = _config_from_tree(tree)
    _resolve_method(cfg, named)
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: Config) -> None:
    checks = [
        (cfg.train.epochs >= 1, "train.epochs must be at least 1"),
        (cfg.train.batch_size >= 2, "train.batch_size must be at least 2 (batch statistics need two samples)"),
        (cfg.train.log_every >= 1, "train.log_every must be at least 1"),
        (cfg.train.checkpoint_every >= 1, "train.checkpoint_every must be at least 1"),
        (cfg.train.checkpoint_minutes >= 0, "train.checkpoint_minutes must be 0 (off) or positive"),
        (cfg.train.precision in ("auto", "bf16", "fp32", "fp64"), "train.precision must be auto, bf16, fp32 or fp64"),
        (cfg.train.channels_last in ("auto", "true", "false"), "train.channels_last must be auto, true or false"),
        (cfg.data.placement in ("auto", "device", "host"), "data.placement must be auto, device or host"),
        (cfg.data.subset >= 0, "data.subset must be 0 (all images) or a positive count"),
        (cfg.optim.lr >= 0, "optim.lr must not be negative"),
        (all(0 <= b < 1 for b in cfg.optim.betas), "optim.betas must be two numbers in [0, 1)"),
        (cfg.optim.clip_grad >= 0, "optim.clip_grad must be 0 (off) or positive"),
        (cfg.optim.schedule in ("cosine", "infinite"), "optim.schedule must be cosine or infinite"),
        (cfg.optim.bias_lr_scale >= 0, "optim.bias_lr_scale must not be negative"),
        (0 <= cfg.optim.constant_lr_ratio <= 1, "optim.constant_lr_ratio must be in [0, 1]"),
        (cfg.eval.knn_k >= 1, "eval.knn_k must be at least 1"),
        (cfg.eval.knn_t > 0, "eval.knn_t must be positive"),
        (cfg.train.sync_bn in ("auto", "true", "false"), "train.sync_bn must be auto, true or false"),
        (cfg.train.dist_timeout > 0, "train.dist_timeout must be positive (seconds)"),
        (cfg.eval.online_knn_size >= 1, "eval.online_knn_size must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    check_loggers(cfg.train.loggers)
    check_optim(cfg.optim.name, cfg.optim.lars_trust, cfg.optim.clip_grad_mode)


def legacy_defaults(cls: type) -> dict:
    """The values that fields added to ``cls`` since config version 1 had before they existed: a run
    folder written then resumes doing what it did."""
    return {f.name: f.metadata["legacy"] for f in fields(cls) if "legacy" in f.metadata}


def load_run_config(path: str | Path) -> Config:
    """The resolved config saved in a run folder (older versions' configs included)."""
    tree = yaml.safe_load(Path(path).read_text())
    if isinstance(tree, dict) and "config_version" not in tree:  # version 1: fill in the legacy values
        tree = {**tree, "config_version": 1}
        tree["optim"] = {**legacy_defaults(OptimConfig), **(tree.get("optim") or {})}
    cfg = _config_from_tree(tree, legacy=True)
    _resolve_method(cfg)
    return cfg


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
