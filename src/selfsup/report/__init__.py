"""``selfsup report RUN_DIR [RUN_DIR ...]``: one self-contained HTML page about one or more runs.

The page answers three questions: is the representation good (evaluation table, kNN confusion
matrix, a 2-D map of test embeddings), is training healthy (loss and learning rate, online kNN,
the collapse diagnostics against their alarm thresholds, the singular value spectrum), and what
did the model see (pairs of augmented views from the run's own pipeline). With several runs the
curves are overlaid and a comparison table leads. Images are embedded PNGs, so the file reads
offline. Plots need the optional extra ``selfsup[report]`` (matplotlib; scikit-learn for the
t-SNE map); the page says which parts were skipped and why.

Masked-modelling and vision-transformer runs get two more figures: for methods with a
``visualize(x)`` (MAE, GMML, SiT), original / masked / reconstructed test images from the method
rebuilt from the run's last checkpoint; for ViT encoders, the class token's attention over the
patches in the last block, per head, on a few test images (DINO's maps, Caron et al. 2021, Fig. 1).
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import torch

from .errors import UsageError
from .runs import RunFolder

MAP_POINTS = 2000        # test embeddings in the 2-D map
CONFUSION_MEMORY = 20000  # train images used as the kNN memory of the confusion matrix
RECONSTRUCTED = 8         # test images shown original / masked / reconstructed
ATTENDED = 6              # test images shown with their class-token attention maps


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class _Run:
    def __init__(self, path: Path):
        self.folder = RunFolder(path)
        self.folder.require("config")
        self.name = self.folder.path.name
        self.config_text = self.folder.config.read_text()
        self.summary = self.folder.read_summary()
        self.metrics = self.folder.read_metrics()

    def events(self, kind: str) -> list[dict]:
        return [m for m in self.metrics if m.get("event") == kind]


def _curves(runs: list[_Run], plt) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for run in runs:
        steps = run.events("step")
        axes[0].plot([m["step"] for m in steps], [m["loss"] for m in steps], label=run.name)
        axes[1].plot([m["step"] for m in steps], [m["lr"] for m in steps], label=run.name)
        knn = [m for m in run.events("epoch") if m.get("knn_top1") is not None]
        final = run.summary.get("knn_top1")
        xs, ys = [m["epoch"] for m in knn], [m["knn_top1"] for m in knn]
        if final is not None and run.summary.get("finished"):
            xs, ys = xs + [run.summary.get("epochs_done", run.summary.get("epochs"))], ys + [final]
        line = axes[2].plot(xs, ys, marker="o", label=f"{run.name} kNN (test)")[0]
        for key, style, what in (("online_knn_top1", "--", "online kNN"), ("online_linear_top1", ":", "online linear")):
            online = [m for m in run.events("epoch") if m.get(key) is not None]
            if online:  # on the training batches' augmented views: trends, not final figures
                axes[2].plot([m["epoch"] for m in online], [m[key] for m in online], style,
                             color=line.get_color(), label=f"{run.name} {what}")
    axes[2].legend(fontsize=7)
    for ax, title, xlabel in zip(axes, ("training loss", "learning rate", "top-1: kNN on test, online probes"),
                                 ("step", "step", "epoch")):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _png(fig)


def _diagnostics(runs: list[_Run], plt) -> tuple[str | None, str | None]:
    diag = {run.name: run.events("diagnostics") for run in runs}
    if not any(diag.values()):
        return None, None
    keys = [k for k in ("rankme_fraction", "proj_rankme_fraction", "norm_std_ratio", "proj_norm_std_ratio",
                        "alignment", "uniformity")
            if any(k in d for events in diag.values() for d in events)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run in runs:
            events = [d for d in diag[run.name] if key in d]
            ax.plot([d["epoch"] for d in events], [d[key] for d in events], marker=".", label=run.name)
            threshold = (events[-1].get("thresholds") or {}).get(key) if events else None
            if threshold is not None:
                ax.axhline(threshold, color="red", linestyle="--", linewidth=1, label="alarm threshold")
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    over_time = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for run in runs:
        last = [d for d in diag[run.name] if d.get("spectrum")]
        if last:
            s = last[-1]["spectrum"]
            ax.semilogy(range(1, len(s) + 1), s, label=f"{run.name} (epoch {last[-1]['epoch']})")
    ax.set_title("singular values of the embedding covariance (normalised)")
    ax.set_xlabel("index")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return over_time, _png(fig)


def _run_pictures(run: _Run, plt, device: str, skipped: list[str]) -> dict:
    """Views, 2-D map and kNN confusion matrix of one finished run (needs its encoder and data)."""
    from .augment.views import ViewRecipe
    from .config import load_run_config
    from .data import load_dataset
    from .encoder import load_encoder, preprocess_fn
    from .evaluate import extract_features, knn_predict

    out = {}
    cfg = load_run_config(run.folder.config)
    try:
        data = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir)
    except UsageError as e:
        skipped.append(f"{run.name}: pictures of the data skipped ({e})")
        return out
    if not run.folder.encoder.is_file():
        skipped.append(f"{run.name}: no encoder.pt (unfinished run): views only, no map or confusion matrix")
        encoder = None
        spec = None
    else:
        encoder = load_encoder(run.folder.path, device)
        spec = encoder.input_spec
    channels = cfg.augment.channels
    mean = spec["mean"] if spec else [0.5] * channels
    std = spec["std"] if spec else [0.25] * channels
    recipe = ViewRecipe(cfg.view_configs(), channels, mean, std)
    sample = data.train[:8]
    views = recipe(sample, torch.Generator().manual_seed(0))
    fig, axes = plt.subplots(len(views) + 1, len(sample), figsize=(1.3 * len(sample), 1.3 * (len(views) + 1)))
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    rows = [sample.float() / 255] + [(v * s + m).clamp(0, 1) for v in views]
    for r, row in enumerate(rows):
        for c in range(len(sample)):
            img = row[c].permute(1, 2, 0).numpy()
            axes[r][c].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            axes[r][c].axis("off")
        axes[r][0].set_title("original" if r == 0 else f"view {r}", fontsize=7, loc="left")
    out["views"] = _png(fig)
    if encoder is None or data.test is None or data.test_labels is None or data.train_labels is None:
        if encoder is not None:
            skipped.append(f"{run.name}: {data.name} has no labelled test split: no map or confusion matrix")
        return out

    transform = preprocess_fn(spec)
    n_test = min(MAP_POINTS, len(data.test))
    test_f = extract_features(encoder, data.test[:n_test], transform, 512, device)
    labels = data.test_labels[:n_test].numpy()
    try:
        from sklearn.manifold import TSNE
        xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=30).fit_transform(
            torch.nn.functional.normalize(test_f, dim=1).cpu().numpy())
        method = "t-SNE"
    except ImportError:
        centred = test_f - test_f.mean(0)
        xy = (centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:2].T).cpu().numpy()
        method = "PCA"
        skipped.append(f"{run.name}: t-SNE needs scikit-learn (pip install 'selfsup[report]'); the map is a PCA")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=4)
    ax.legend(*scatter.legend_elements(), fontsize=6, loc="best", markerscale=0.8)
    ax.set_title(f"{method} of {n_test} test embeddings, coloured by label")
    ax.set_xticks([])
    ax.set_yticks([])
    out["map"] = _png(fig)

    n_mem = min(CONFUSION_MEMORY, len(data.train))
    train_f = extract_features(encoder, data.train[:n_mem], transform, 512, device)
    all_test = extract_features(encoder, data.test, transform, 512, device)
    pred = knn_predict(train_f, data.train_labels[:n_mem].to(train_f.device), all_test, k=cfg.eval.knn_k,
                       temperature=cfg.eval.knn_t, num_classes=data.num_classes).cpu()
    k = data.num_classes
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((data.test_labels, pred), torch.ones_like(pred), accumulate=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(confusion / confusion.sum(1, keepdim=True).clamp(min=1), cmap="Blues", vmin=0, vmax=1)
    names = data.classes or [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    for i in range(k):
        for j in range(k):
            if confusion[i, j]:
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=6)
    accuracy = (pred == data.test_labels).float().mean().item()
    ax.set_title(f"kNN (k={cfg.eval.knn_k}) confusion, memory {n_mem} train images: top-1 {accuracy:.4f}",
                 fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    out["confusion"] = _png(fig)
    return out


def _show(ax, img, title=None, **kw) -> None:
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, **kw)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=7, loc="left")


def _masked_vit_pictures(run: _Run, plt, device: str, skipped: list[str]) -> dict:
    """Reconstructions (methods with ``visualize``) and class-token attention maps (ViT encoders)
    on the first test images; each part says in ``skipped`` why it is missing."""
    from .backbones import VIT_NAMES, backbone_for
    from .config import load_run_config
    from .data import load_dataset
    from .encoder import load_encoder, preprocess_fn
    from .methods import METHODS

    out = {}
    cfg = load_run_config(run.folder.config)
    method_cls = METHODS[cfg.method]
    wants_recon = hasattr(method_cls, "visualize")
    wants_attention = cfg.model.backbone in VIT_NAMES
    if not wants_recon:
        skipped.append(f"{run.name}: no reconstructions ({cfg.method} does not reconstruct images)")
    if not wants_attention:
        skipped.append(f"{run.name}: no attention maps ({cfg.model.backbone} is not a vision transformer)")
    if not (wants_recon or wants_attention):
        return out
    if not run.folder.encoder.is_file():
        skipped.append(f"{run.name}: no reconstructions or attention maps (no encoder.pt: unfinished run)")
        return out
    try:
        data = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir)
    except UsageError as e:
        skipped.append(f"{run.name}: no reconstructions or attention maps ({e})")
        return out
    images, split = (data.test, "test") if data.test is not None else (data.train, "train")
    encoder = load_encoder(run.folder.path, device)
    spec = encoder.input_spec
    x = preprocess_fn(spec)(images[:max(RECONSTRUCTED, ATTENDED)].to(device))
    mean = torch.tensor(spec["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], device=device).view(1, -1, 1, 1)

    def pixels(t: torch.Tensor):  # normalised (N, C, H, W) -> displayable (N, H, W, C) in [0, 1]
        return (t.float() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    if wants_recon and not run.folder.checkpoint.is_file():
        skipped.append(f"{run.name}: no reconstructions (no checkpoints/last.pt to rebuild the method from)")
    elif wants_recon:
        backbone = backbone_for(cfg)
        method = method_cls(backbone, method_cls.Args(**cfg.method_args))
        ckpt = torch.load(run.folder.checkpoint, map_location="cpu", weights_only=False)
        method.load_state_dict(ckpt["method"])
        method.to(device).eval()
        shown = x[:RECONSTRUCTED]
        vis = method.visualize(shown)
        rows = [("original", pixels(shown)), ("masked", pixels(vis["masked"])),
                ("reconstruction", pixels(vis["reconstruction"]))]
        fig, axes = plt.subplots(len(rows), len(shown), figsize=(1.3 * len(shown), 1.3 * len(rows)), squeeze=False)
        for r, (title, row) in enumerate(rows):
            for c in range(len(shown)):
                _show(axes[r][c], row[c], title if c == 0 else None, cmap="gray", vmin=0, vmax=1)
        fig.suptitle(f"{cfg.method}: {split} images, the method's masking (seeded) and its output", fontsize=8)
        out["reconstructions"] = _png(fig)
    if wants_attention:
        shown = x[:ATTENDED]
        maps = encoder.cls_attention(shown).float().cpu()  # (N, heads, grid, grid)
        heads = maps.shape[1]
        img = pixels(shown)
        fig, axes = plt.subplots(len(shown), heads + 1, figsize=(1.3 * (heads + 1), 1.3 * len(shown)), squeeze=False)
        for r in range(len(shown)):
            _show(axes[r][0], img[r], "image" if r == 0 else None, cmap="gray", vmin=0, vmax=1)
            for h in range(heads):
                _show(axes[r][h + 1], maps[r, h].numpy(), f"head {h + 1}" if r == 0 else None, cmap="inferno")
        fig.suptitle(f"class-token attention over the {maps.shape[-1]}x{maps.shape[-1]} patches, last block "
                     f"({split} images)", fontsize=8)
        out["attention"] = _png(fig)
    return out


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def _eval_rows(run: _Run) -> list[dict]:
    s = run.summary
    rows = [{"run": run.name, "protocol": f"kNN (k, T from config)", "dataset": s.get("dataset"),
             "encoder": s.get("knn_top1"), "raw pixels": s.get("knn_top1_raw_pixels")}]
    for dataset, results in (s.get("eval") or {}).items():
        for key, value in results.items():
            if isinstance(value, (int, float)) and not key.endswith("raw_pixels"):
                rows.append({"run": run.name, "protocol": key, "dataset": dataset, "encoder": value,
                             "raw pixels": results.get(f"{key}_raw_pixels")})
    return rows


def write_report(run_dirs: list[str | Path], out: str | Path | None = None, device: str = "cpu") -> Path:
    if not run_dirs:
        raise UsageError("selfsup report needs at least one run folder")
    runs = [_Run(Path(p)) for p in run_dirs]
    out = Path(out) if out else runs[0].folder.path / "report.html"
    skipped: list[str] = []
    sections: list[str] = []
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
        skipped.append("all plots: matplotlib is not installed (pip install 'selfsup[report]')")

    compare_cols = ["run", "method", "dataset", "epochs_done", "knn_top1", "knn_top1_raw_pixels",
                    "train_seconds", "images_per_second", "finished"]
    sections.append("<h2>Runs</h2>" + _table([{"run": r.name, **r.summary} for r in runs], compare_cols))
    sections.append("<h2>Evaluation</h2>" + _table([row for r in runs for row in _eval_rows(r)],
                                                   ["run", "protocol", "dataset", "encoder", "raw pixels"]))
    if plt is not None:
        sections.append(f"<h2>Training</h2><img alt='training curves' src='{_curves(runs, plt)}'>")
        over_time, spectrum = _diagnostics(runs, plt)
        if over_time:
            sections.append(f"<h2>Health</h2><img alt='diagnostics' src='{over_time}'>"
                            f"<img alt='spectrum' src='{spectrum}'>")
        else:
            skipped.append("diagnostics: the runs logged none (eval.diagnose_every was 0)")
        for run in runs:
            alarms = run.events("collapse")
            pics = _run_pictures(run, plt, device, skipped)
            pics.update(_masked_vit_pictures(run, plt, device, skipped))
            parts = [f"<h2>{html.escape(run.name)}</h2>"]
            if alarms:
                parts.append("<p class='alarm'>collapse alarm: " + html.escape("; ".join(
                    f"epoch {a.get('epoch')}: {', '.join(a.get('reasons', []))}" for a in alarms)) + "</p>")
            for key, title in (("views", "augmented views (the run's own pipeline)"),
                               ("map", "test embeddings"), ("confusion", "kNN confusion matrix"),
                               ("reconstructions", "original / masked / reconstructed test images"),
                               ("attention", "class-token attention maps (last block, per head)")):
                if key in pics:
                    parts.append(f"<figure><img alt='{key}' src='{pics[key]}'><figcaption>{title}</figcaption></figure>")
            parts.append(f"<details><summary>config.yaml</summary><pre>{html.escape(run.config_text)}</pre></details>")
            sections.append("".join(parts))
    if skipped:
        sections.append("<h2>Skipped</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped) + "</ul>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>selfsup report</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}} img{{max-width:100%}}
table{{border-collapse:collapse;margin:0.5em 0}} td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
figure{{display:inline-block;margin:0.5em;vertical-align:top}} .alarm{{color:#b00;font-weight:bold}}
pre{{background:#f6f6f6;padding:0.5em}}</style></head><body>
<h1>selfsup report: {html.escape(', '.join(r.name for r in runs))}</h1>{''.join(sections)}
<script type="application/json" id="summaries">{html.escape(json.dumps([r.summary for r in runs]))}</script>
</body></html>"""
    out.write_text(page)
    return out
