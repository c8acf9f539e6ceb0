"""Encoders out of selfsup: the run's encoder files, and ONNX, TorchScript and safetensors exports
checked against the torch encoder.

**The run's encoder** (format ``selfsup-encoder/3``) is two files in the run folder:

* ``encoder.safetensors``: the backbone's ``state_dict`` in the safetensors format (a JSON header
  and the raw little-endian tensor bytes: no pickle, nothing executed on load); its header's
  ``__metadata__["selfsup"]`` holds the record below, so the file alone says what it is;
* ``encoder.json``: the record: ``format``, ``modality``, ``backbone`` (the spec that rebuilds the
  architecture, :func:`selfsup.backbones.rebuild`), ``feature_dim``, ``input`` (the modality's input
  spec: what the encoder must be fed), ``preprocess`` (that in words), ``method``, ``dataset`` and
  ``weights`` (the weights file's name and SHA-256, so a record is never paired with other weights).

The safetensors format is read and written here (:func:`save_safetensors`, :func:`load_safetensors`,
about sixty lines after its specification): a run's encoder needs no optional package, and the files
are the standard format (the tests check that the ``safetensors`` package reads ours and we read its).
Older runs' ``encoder.pt`` (formats /1 and /2, a torch file loaded with ``weights_only=True``) are
read too.

**Exports** (``selfsup export RUN --format onnx|torchscript|safetensors``) take the encoder as
:func:`selfsup.load_encoder` gives it: the graph's input is the modality's *model input*, the
samples after the modality's evaluation transform (for images: resized to ``size``, channels
replicated to ``channels``, scaled to [0, 1] and normalised with the per-channel ``mean`` and
``std``), with a dynamic batch dimension; the output is the features ``(N, feature_dim)``. The
normalisation is not inside the graph; it is stated in the file's metadata (ONNX ``metadata_props``,
TorchScript's extra file ``selfsup.json``, the safetensors header), the same record as
``encoder.json``. Why outside: the three formats and :func:`selfsup.load_encoder` then take one and
the same input, checked in one way; and it works for every modality, where a table's preprocessing
(column scaling, category codes from strings) cannot live in a float graph at all.

Every export is checked when written: the exported model is run (onnxruntime for ONNX,
``torch.jit.load`` for TorchScript, a reload for safetensors) on the run's probe batch (the seeded
sample of the training split the diagnostics use, through the evaluation transform) and compared
with the torch encoder; the largest difference and the tolerance are printed, and a difference
above the tolerance is an :class:`ExportError`. Tolerances: safetensors 0 (bit-identical);
TorchScript ``1e-5``, ONNX ``1e-4``, each times ``max(1, max |feature|)``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import json
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .backbones import rebuild
from .data.base import training_subset
from .errors import UsageError
from .loggers import probe_indices
from .runs import ENCODER_FORMAT, LEGACY_ENCODER_FORMATS, RunFolder, atomic_write_bytes

FORMATS = ("onnx", "torchscript", "safetensors")
DEFAULT_NAMES = {"onnx": "encoder.onnx", "torchscript": "encoder.torchscript.pt", "safetensors": "encoder.safetensors"}
TOLERANCE = {"safetensors": 0.0, "torchscript": 1e-5, "onnx": 1e-4}  # times max(1, max |feature|)
EXTRA = "export"  # pip install 'selfsup[export]'


class ExportError(Exception):
    """An exported model does not reproduce the torch encoder (exit status 1 in the CLI)."""

    exit_code = 1


def require(package: str, extra: str, what: str):
    """``package`` imported, or a one-line UsageError naming the extra that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UsageError(f"{what} needs the {package} package: pip install 'selfsup[{extra}]'") from None


# ------------------------------------------------------------------------------------ safetensors

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # the specification's limit on the JSON header


def save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` to ``path`` in the safetensors format (atomically): an 8-byte little-endian
    header length, a JSON header (name -> dtype, shape, byte offsets; ``__metadata__``: str -> str),
    padded with spaces to a multiple of 8, then each tensor's bytes in C order, in name order."""
    if sys.byteorder != "little":  # the format is little-endian; so are the machines torch runs on
        raise NotImplementedError("writing safetensors on a big-endian machine")
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"{name}: dtype {t.dtype} has no safetensors name")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    atomic_write_bytes(Path(path), len(head).to_bytes(8, "little") + head + b"".join(chunks))


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; every header entry is checked against the file
    (a foreign or truncated file is a one-line UsageError, never a crash or an out-of-range read)."""
    path = Path(path)
    raw = path.read_bytes()

    def bad(why: str) -> UsageError:
        return UsageError(f"{path} is not a readable safetensors file ({why})")

    if len(raw) < 8:
        raise bad("shorter than its header length")
    n = int.from_bytes(raw[:8], "little")
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise bad("its header length runs past the end of the file")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("its header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__ must map strings to strings")
    body = memoryview(raw)[8 + n :]
    entries = []
    for name, entry in header.items():
        try:
            dtype, shape = _DTYPES[entry["dtype"]], [int(s) for s in entry["shape"]]
            start, stop = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"entry {name!r} has no known dtype, shape and data_offsets") from None
        entries.append((start, stop, name, dtype, shape))
    tensors, end = {}, 0
    for start, stop, name, dtype, shape in sorted(entries, key=lambda e: (e[0], e[1])):
        count = 1
        for s in shape:
            count *= s
        size = count * torch.empty((), dtype=dtype).element_size()
        if min(shape, default=0) < 0 or start != end or stop - start != size or stop > len(body):
            raise bad(f"entry {name!r}: its offsets do not match its shape or the file")
        end = stop
        if size == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:  # a copy of the bytes (a fresh, aligned buffer that the tensor keeps alive)
            tensors[name] = torch.frombuffer(bytearray(body[start:stop]), dtype=torch.uint8).view(dtype).reshape(shape)
    if end != len(body):
        raise bad("the tensors do not cover the data that follows the header")
    return tensors, metadata


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------- the record


def describe_input(modality: str, spec: dict) -> str:
    """What an exported graph must be fed, in words, from the modality's input spec alone."""
    text = (
        f"the {modality} modality's model input: samples through selfsup's evaluation transform "
        "(selfsup.encoder.preprocess_fn) with this record's input spec; the normalisation is not inside the graph"
    )
    if {"mean", "std"} <= set(spec):
        shape = " x ".join(str(spec[k]) for k in ("channels", "size", "size") if k in spec)
        text += f"; float32 (N, {shape}): values scaled to [0, 1], then (x - mean) / std per channel"
    return text


def encoder_record(
    modality: str, backbone_spec: dict, feature_dim: int, input_spec: dict, method: str | None, dataset: str | None
) -> dict:
    """The JSON record of an encoder (``encoder.json``; also the metadata of every export)."""
    return {
        "format": ENCODER_FORMAT,
        "modality": modality,
        "backbone": backbone_spec,
        "feature_dim": int(feature_dim),
        "input": input_spec,
        "preprocess": describe_input(modality, input_spec),
        "method": method,
        "dataset": dataset,
    }


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors of their own (safetensors refuses shared storage)."""
    return {
        k: v.detach().to("cpu", memory_format=torch.contiguous_format).clone() for k, v in module.state_dict().items()
    }


def write_run_encoder(run: RunFolder, module: nn.Module, record: dict) -> None:
    """Write the run's encoder: ``encoder.safetensors`` first, then ``encoder.json`` naming its hash
    (the record is what marks the encoder complete; both are written atomically)."""
    save_safetensors(_state(module), run.encoder_weights, {"selfsup": json.dumps(record)})
    record = {**record, "weights": {"file": run.encoder_weights.name, "sha256": sha256(run.encoder_weights)}}
    atomic_write_bytes(run.encoder_record, (json.dumps(record, indent=2) + "\n").encode())


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} is not a readable selfsup encoder record ({type(e).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != ENCODER_FORMAT:
        raise UsageError(f"{path} is not a selfsup encoder record (expected format {ENCODER_FORMAT})")
    return record


def _legacy_blob(path: Path) -> dict:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise UsageError(
            f"{path} is not a readable selfsup encoder ({type(e).__name__}); re-export it by finishing the run"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") not in LEGACY_ENCODER_FORMATS:
        raise UsageError(f"{path} is not a selfsup encoder file (expected format {LEGACY_ENCODER_FORMATS[-1]})")
    return blob


def read_encoder(source: str | Path, backbone: nn.Module | None = None) -> nn.Module:
    """The encoder a run folder (``encoder.json`` + ``encoder.safetensors``, or an older
    ``encoder.pt``) or a standalone ``.safetensors`` export holds, on the CPU, in eval mode, with
    ``modality``, ``input_spec``, ``backbone_spec`` and ``feature_dim`` set.

    ``backbone``: the architecture to load the weights into, for an encoder whose backbone was
    given from Python (:func:`selfsup.train` with ``backbone=``) and cannot be rebuilt from its spec.
    """
    source = Path(source)
    if source.is_file() and source.suffix == ".safetensors":
        state, metadata = load_safetensors(source)
        if "selfsup" not in metadata:
            raise UsageError(f"{source} holds no selfsup record (its header has no __metadata__.selfsup)")
        try:
            record = json.loads(metadata["selfsup"])
        except json.JSONDecodeError:
            raise UsageError(f"{source}: its selfsup record is not JSON") from None
    else:
        run = RunFolder(source)
        path = run.require("encoder")
        if path.suffix == ".pt":
            blob = _legacy_blob(path)
            record = {k: v for k, v in blob.items() if k != "state_dict"}
            record.setdefault("modality", "image")  # format 1 held images only
            state = blob["state_dict"]
        else:
            record = _read_record(path)
            weights = path.with_name((record.get("weights") or {}).get("file") or run.encoder_weights.name)
            if not weights.is_file():
                raise UsageError(f"{weights} is missing: {path.name} names it; finish or re-export the run")
            if sha256(weights) != (record.get("weights") or {}).get("sha256"):
                raise UsageError(f"{weights} is not the file {path.name} was written with (its SHA-256 differs)")
            state, _ = load_safetensors(weights)
    encoder = _architecture(record, backbone)
    try:
        encoder.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UsageError(f"{source}: the weights do not fit the architecture ({first})") from None
    encoder.modality = record["modality"]
    encoder.input_spec = record["input"]
    encoder.backbone_spec = encoder.spec
    encoder.feature_dim = int(record.get("feature_dim") or encoder.feature_dim)
    encoder.method, encoder.dataset = record.get("method"), record.get("dataset")
    return encoder.eval()


def _architecture(record: dict, backbone: nn.Module | None) -> nn.Module:
    if backbone is not None:  # the caller's instance of the architecture
        if not getattr(backbone, "feature_dim", None):
            backbone.feature_dim = int(record["feature_dim"])
        if not isinstance(getattr(backbone, "spec", None), dict):
            backbone.spec = record["backbone"]
        return backbone
    spec = record["backbone"]
    if str(spec.get("name", "")).startswith("python:"):
        raise UsageError(
            f"this encoder's backbone ({spec['name'][7:]}) was given from Python and cannot be rebuilt from its "
            "record; load it with selfsup.load_encoder(run, backbone=<a fresh instance>), or train with "
            "model.backbone: module:package.path:factory so that it can be"
        )
    return rebuild(spec, record["input"])


# -------------------------------------------------------------------------------------- exports


@dataclass
class Exported:
    path: Path
    format: str
    max_diff: float
    tolerance: float
    samples: int
    exporter: str  # which exporter wrote it (ONNX: the torch.export-based one, or the TorchScript-based)


def _metadata(record: dict) -> dict[str, str]:
    return {"selfsup": json.dumps(record), "selfsup.preprocess": record.get("preprocess", "")}


@contextlib.contextmanager
def _quiet():
    """The exporters' deprecation and tracer warnings and their INFO/WARNING logging, silenced (the
    check below is what says whether the export is right)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _onnx(encoder: nn.Module, example: torch.Tensor, path: Path, record: dict) -> str:
    onnx = require("onnx", EXTRA, "ONNX export")
    require("onnxruntime", EXTRA, "checking an ONNX export")
    names = {"input_names": ["input"], "output_names": ["features"]}
    axes = {"input": {0: "batch"}, "features": {0: "batch"}}
    exporter = "torch.export"
    with _quiet():
        try:
            require("onnxscript", EXTRA, "ONNX export")
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                encoder,
                (example,),
                str(path),
                dynamo=True,
                dynamic_shapes=({0: batch},),
                external_data=False,  # one file (ONNX's protobuf limit: encoders under 2 GB)
                verbose=False,
                **names,
            )
        except Exception as e:  # a module torch.export cannot capture (or an older torch): the tracing exporter
            exporter = f"TorchScript-based (torch.export failed: {_first_line(e)})"
            try:
                torch.onnx.export(encoder, (example,), str(path), dynamo=False, dynamic_axes=axes, **names)
            except Exception as legacy:  # neither exporter can write it (an operator ONNX does not have)
                raise ExportError(
                    f"the encoder cannot be exported to ONNX ({_first_line(legacy)}); TorchScript and safetensors "
                    "exports do not have this limit"
                ) from None
    model = onnx.load(str(path))
    for key, value in _metadata(record).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return exporter


def _run_onnx(path: Path, x: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
    ort = require("onnxruntime", EXTRA, "checking an ONNX export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _torchscript(encoder: nn.Module, example: torch.Tensor, path: Path, record: dict) -> str:
    with _quiet():
        traced = torch.jit.trace(encoder, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"selfsup.json": json.dumps(record)})
    return "torch.jit.trace"


def _run_torchscript(path: Path, x: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
    with _quiet():
        return torch.jit.load(str(path), map_location="cpu")(x)


def _safetensors(encoder: nn.Module, example: torch.Tensor, path: Path, record: dict) -> str:
    save_safetensors(_state(encoder), path, _metadata(record))
    return "safetensors"


def _run_safetensors(path: Path, x: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
    """The file reloaded: rebuilt from its record, or (a backbone given from Python, which cannot be
    rebuilt) its weights loaded into a copy of the architecture."""
    rebuildable = not str((getattr(encoder, "spec", None) or {}).get("name", "")).startswith("python:")
    return read_encoder(path, None if rebuildable else copy.deepcopy(encoder))(x)


_WRITERS = {"onnx": (_onnx, _run_onnx), "torchscript": (_torchscript, _run_torchscript)}
_WRITERS["safetensors"] = (_safetensors, _run_safetensors)


@torch.no_grad()
def export_module(encoder: nn.Module, fmt: str, path: str | Path, check_batch: torch.Tensor, record: dict) -> Exported:
    """Export ``encoder`` (any module mapping the model input to ``(N, D)``) as ``fmt`` to ``path``
    with ``record`` as its metadata, then run the file on ``check_batch`` (model input, at least two
    samples) and compare with ``encoder``: an :class:`ExportError` when it differs by more than the
    format's tolerance. The graph's batch dimension is dynamic: it is traced on two samples and
    checked on the whole batch."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = copy.deepcopy(encoder).to("cpu").float().eval()  # the caller's module stays where and as it is
    x = check_batch.to("cpu", torch.float32).contiguous()
    if len(x) < 2:
        x = torch.cat([x, x])
    write, run = _WRITERS[fmt]
    expected = encoder(x).float()  # first: a custom backbone's one-time output check is then out of the trace
    exporter = write(encoder, x[:2].clone(), path, record)
    try:
        got = run(path, x, encoder).float()
    except Exception as e:
        raise ExportError(
            f"{path}: the exported {fmt} model fails on the check batch of {len(x)} ({_first_line(e)}); "
            "the file is kept for inspection"
        ) from None
    if got.shape != expected.shape:
        raise ExportError(f"{path}: the exported model gives {tuple(got.shape)} for {tuple(expected.shape)}")
    diff = (got - expected).abs().max().item() if expected.numel() else 0.0
    tolerance = TOLERANCE[fmt] * max(1.0, expected.abs().max().item() if expected.numel() else 0.0)
    if not diff <= tolerance:  # NaN fails too
        raise ExportError(
            f"{path}: the {fmt} model differs from the torch encoder by {diff:.3g} on the check batch, above the "
            f"tolerance {tolerance:.3g}; the file is kept for inspection"
        )
    return Exported(path, fmt, diff, tolerance, len(x), exporter)


def probe_samples(cfg, data):
    """The run's probe batch (raw samples, with their extras when the split has any)."""
    train = data.rows("train") if hasattr(data, "rows") else data.train
    return train[probe_indices(cfg, len(train))]


def export_run(
    run_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    backbone: nn.Module | None = None,
) -> Exported:
    """Export a finished run's encoder as ``fmt`` (default file: ``RUN/export/<encoder file>``) and
    check it on the run's probe batch (or on the same seeded sample of ``data``'s training split when
    the run's data is not where it was)."""
    from .config import load_run_config
    from .data.sources import load_dataset
    from .modalities import get_modality

    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    run = RunFolder(run_dir)
    cfg = load_run_config(run.require("config"))
    encoder = read_encoder(run.path, backbone)
    options = {**cfg.data.options, **({"target": cfg.data.target} if cfg.data.target else {})} if data is None else {}
    dataset = load_dataset(
        data or cfg.data.name,
        data_dir=data_dir if data else (data_dir or cfg.data.data_dir),
        options=options,
        input_spec=encoder.input_spec,
    )
    modality = get_modality(encoder.modality)
    if dataset.modality != modality.name:
        raise UsageError(f"{dataset.name} holds {dataset.modality} data but the encoder takes {modality.name} data")
    modality.check_input(dataset, encoder.input_spec)
    if cfg.data.subset and data is None:  # the run trained, and drew its probe batch, on this subset
        dataset = training_subset(dataset, cfg.data.subset)
    x = modality.eval_transform(encoder.input_spec)(probe_samples(cfg, dataset))
    record = encoder_record(
        encoder.modality, encoder.backbone_spec, encoder.feature_dim, encoder.input_spec, cfg.method, cfg.data.name
    )
    path = Path(out) if out else run.path / "export" / DEFAULT_NAMES[fmt]
    return export_module(encoder, fmt, path, x, record)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else "") or type(e).__name__
