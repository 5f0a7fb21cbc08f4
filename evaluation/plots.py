"""Evaluation plots (matplotlib, Agg backend: no display needed on workers).

Each ``*_figure`` function returns a Figure; :func:`write_plots` saves the ones that apply as PNG.
The MTL-LoRA plots show what the model learned to share: the per-task mixing weights
softmax(w_t/τ) over the shared up-projections of every adapted layer, and how alike the tasks'
Λ_t transforms are (cosine similarity of the flattened Λ_t, concatenated over layers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from evaluation.metrics import class_reason, pr_auc, roc_auc  # noqa: E402


def _per_task(labels: Any, scores: Any, tasks: Any):
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    names = np.asarray(tasks, dtype=object)
    for task in dict.fromkeys(names.tolist()):
        rows = names == task
        yield str(task), y[rows], s[rows]


def _curves_figure(labels: Any, scores: Any, tasks: Any, draw) -> tuple[Figure, Any]:
    """One curve per task drawn by ``draw(ax, task, y, s)``; tasks with one class are listed as
    undefined in the legend instead."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for task, y, s in _per_task(labels, scores, tasks):
        reason = class_reason(y)
        if reason:
            ax.plot([], [], " ", label=f"{task}: {reason}")
        else:
            draw(ax, task, y, s)
    return fig, ax


def roc_figure(labels: Any, scores: Any, tasks: Any) -> Figure:
    """ROC curve per task (tasks with one class are listed as undefined in the legend)."""
    from sklearn.metrics import roc_curve

    def draw(ax, task, y, s):
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{task} (AUC {roc_auc(y, s):.3f})")

    fig, ax = _curves_figure(labels, scores, tasks, draw)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC per task", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def pr_figure(labels: Any, scores: Any, tasks: Any) -> Figure:
    """Precision-recall curve per task with its average precision."""
    from sklearn.metrics import precision_recall_curve

    def draw(ax, task, y, s):
        precision, recall, _ = precision_recall_curve(y, s)
        ax.step(recall, precision, where="post", label=f"{task} (AP {pr_auc(y, s):.3f})")

    fig, ax = _curves_figure(labels, scores, tasks, draw)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall per task", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    return fig


def calibration_figure(labels: Any, scores: Any, tasks: Any, bins: int = 10) -> Figure:
    """Reliability diagram per task: positive rate against mean score in equal-width bins."""
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    for task, y, s in _per_task(labels, scores, tasks):
        if not y.size:
            continue
        index = np.clip((np.clip(s, 0, 1) * bins).astype(int), 0, bins - 1)
        count = np.bincount(index, minlength=bins)
        used = count > 0
        mean_score = np.bincount(index, weights=s, minlength=bins)[used] / count[used]
        rate = np.bincount(index, weights=y, minlength=bins)[used] / count[used]
        ax.plot(mean_score, rate, "o-", label=task, markersize=4)
    ax.set(xlabel="mean score", ylabel="fraction relevant", title="Calibration per task", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    return fig


def auc_bars_figure(report: Mapping[str, Any], champion_report: Mapping[str, Any] | None = None,
                    metric: str = "roc_auc") -> Figure:
    """Per-task ``metric`` with its bootstrap 95% interval, next to the champion's when given."""
    tasks = list(report["tasks"])
    reports = [("candidate", report)] + ([("champion", champion_report)] if champion_report else [])
    width = 0.8 / len(reports)
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(tasks) + 2), 4))
    x = np.arange(len(tasks))
    for k, (label, rep) in enumerate(reports):
        values, errors = [], [[], []]
        for task in tasks:
            m = rep["tasks"].get(task, {})
            v = m.get(metric)
            low, high = m.get(f"{metric}_ci_low"), m.get(f"{metric}_ci_high")
            values.append(np.nan if v is None else v)
            errors[0].append(0 if v is None or low is None else max(0.0, v - low))
            errors[1].append(0 if v is None or high is None else max(0.0, high - v))
        ax.bar(x + (k - (len(reports) - 1) / 2) * width, values, width, yerr=errors, capsize=3, label=label)
    ax.set_xticks(x, tasks, rotation=30, ha="right")
    ax.set(ylabel=metric, title=f"{metric} per task (95% bootstrap CI)", ylim=(0, 1.05))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def mtl_layers(model: Any) -> dict[str, Any]:
    """The MTLLoRALinear modules of a model by name (empty for other methods)."""
    from models.mtl_lora import MTLLoRALinear

    return {name: m for name, m in model.named_modules() if isinstance(m, MTLLoRALinear)}


def _short(name: str) -> str:
    parts = name.split(".")
    digits = [p for p in parts if p.isdigit()]
    tail = ".".join(p for p in parts[-3:] if not p.isdigit() and p not in ("model", "encoder", "layer"))
    return f"L{digits[-1]}.{tail}" if digits else tail


def mixing_weights_figure(model: Any, task_names: Sequence[str]) -> Figure | None:
    """Heatmap of softmax(w_t/τ): tasks x (layer, up-projection); None without MTL-LoRA layers."""
    import torch

    layers = mtl_layers(model)
    if not layers:
        return None
    with torch.no_grad():
        blocks = [layer.mixing_weights().cpu().numpy() for layer in layers.values()]
    weights = np.concatenate(blocks, axis=1)
    labels = [f"{_short(name)}/B{i}" for name, layer in layers.items() for i in range(layer.num_up)]
    fig, ax = plt.subplots(figsize=(min(40, 2 + 0.18 * weights.shape[1]), 1.5 + 0.45 * len(task_names)))
    image = ax.imshow(weights, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(task_names)), task_names)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
    ax.set_title("MTL-LoRA mixing weights softmax(w_t/τ) per task over (layer, up-projection)")
    fig.colorbar(image, ax=ax, fraction=0.02)
    fig.tight_layout()
    return fig


def lambda_similarity(model: Any) -> np.ndarray | None:
    """Task x task cosine similarity of the Λ_t (flattened, concatenated over layers)."""
    import torch

    layers = mtl_layers(model)
    if not layers:
        return None
    with torch.no_grad():
        flat = torch.cat([layer.task_lambda().float().flatten(1) for layer in layers.values()], dim=1)
        flat = torch.nn.functional.normalize(flat, dim=1)
        return (flat @ flat.T).cpu().numpy()


def lambda_similarity_figure(model: Any, task_names: Sequence[str]) -> Figure | None:
    similarity = lambda_similarity(model)
    if similarity is None:
        return None
    n = len(task_names)
    fig, ax = plt.subplots(figsize=(2.5 + 0.5 * n, 2 + 0.5 * n))
    image = ax.imshow(similarity, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(n), task_names, rotation=45, ha="right")
    ax.set_yticks(range(n), task_names)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("cosine similarity of Λ_t")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(directory: str | Path, report: Mapping[str, Any], *, labels: Any = None, scores: Any = None,
                tasks: Any = None, model: Any = None, model_tasks: Sequence[str] | None = None,
                champion_report: Mapping[str, Any] | None = None) -> list[Path]:
    """Write every plot that the inputs allow as PNG under ``directory``; returns their paths.
    ``model_tasks`` names the model's tasks by id (default: the report's tasks)."""
    out = Path(directory)
    written = [save(auc_bars_figure(report, champion_report), out / "roc_auc_by_task.png"),
               save(auc_bars_figure(report, champion_report, "pr_auc"), out / "pr_auc_by_task.png")]
    if scores is not None:
        written += [save(roc_figure(labels, scores, tasks), out / "roc.png"),
                    save(pr_figure(labels, scores, tasks), out / "pr.png"),
                    save(calibration_figure(labels, scores, tasks), out / "calibration.png")]
    if model is not None:
        names = list(model_tasks or report["tasks"])
        for name, figure in (("mtl_mixing_weights.png", mixing_weights_figure(model, names)),
                             ("mtl_lambda_similarity.png", lambda_similarity_figure(model, names))):
            if figure is not None:
                written.append(save(figure, out / name))
    return written
