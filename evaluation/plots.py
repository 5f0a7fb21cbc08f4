"""Evaluation plots (matplotlib, Agg backend: no display needed on workers).

Each ``*_figure`` function returns a Figure; :func:`write_plots` saves the ones that apply as PNG.
The MTL-LoRA plots show what the model learned per task, one row per task and one column per
transformer block: how concentrated its mixing softmax(w_t/τ) of the shared up-projections is, how
far its Λ_t moved from the identity; and how alike the tasks' learned Λ_t - I are (cosine
similarity, flattened and concatenated over layers), with tasks of a shared market or vertical marked.
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
from matplotlib.patches import Rectangle  # noqa: E402

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


def _block(name: str) -> str:
    """The transformer block of an adapted module: "L3" for "...layer.3.attention.self.query"."""
    digits = [p for p in name.split(".") if p.isdigit()]
    return f"L{digits[-1]}" if digits else "other"


def per_block(model: Any, value: Any) -> tuple[list[str], np.ndarray] | None:
    """``value(layer)`` ([num_tasks] per MTL-LoRA layer) averaged over the adapted modules of each
    transformer block: the block labels and a [num_tasks, blocks] array; None without MTL-LoRA."""
    import torch

    layers = mtl_layers(model)
    if not layers:
        return None
    groups: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for name, layer in layers.items():
            groups.setdefault(_block(name), []).append(np.asarray(value(layer), dtype=np.float64))
    return list(groups), np.stack([np.mean(v, axis=0) for v in groups.values()], axis=1)


def mixing_concentration(layer: Any) -> np.ndarray:
    """Per task, 1 - H(p)/log n of p = softmax(w_t/τ): 0 mixes the n up-projections equally, 1 takes one."""
    p = layer.mixing_weights().detach().double().clamp_min(1e-12)
    if layer.num_up == 1:
        return np.ones(layer.num_tasks)
    return (1 + (p * p.log()).sum(-1) / np.log(layer.num_up)).clamp(0, 1).cpu().numpy()


def lambda_shift(layer: Any) -> np.ndarray:
    """Per task, ||Λ_t - I||_F / ||I||_F: how far Λ_t moved from its identity initialisation."""
    lam = layer.task_lambda().detach().double().cpu().numpy()
    eye = np.eye(layer.rank)
    return np.linalg.norm(lam - eye, axis=(1, 2)) / np.linalg.norm(eye)


def _task_heatmap(values: np.ndarray, rows: Sequence[str], columns: Sequence[str], title: str,
                  vmax: float | None = None) -> Figure:
    fig, ax = plt.subplots(figsize=(2.5 + 0.7 * len(columns), 1.2 + 0.4 * len(rows)))
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("transformer block (averaged over its adapted linear layers)")
    middle = (vmax if vmax is not None else values.max()) / 2
    digits = 2 if values.max() >= 0.1 else 3
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.{digits}f}", ha="center", va="center", fontsize=7,
                    color="black" if values[i, j] > middle else "white")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def mixing_concentration_figure(model: Any, task_names: Sequence[str]) -> Figure | None:
    """Tasks x blocks: how concentrated each task's mixing softmax(w_t/τ) is; None without MTL-LoRA."""
    blocks = per_block(model, mixing_concentration)
    if blocks is None:
        return None
    columns, values = blocks
    return _task_heatmap(values, task_names, columns, "MTL-LoRA mixing concentration per task: 1 - H(p)/log n of "
                         "p = softmax(w_t/τ)\n(0 = the shared up-projections mixed equally, 1 = one of them)", vmax=1)


def lambda_shift_figure(model: Any, task_names: Sequence[str]) -> Figure | None:
    """Tasks x blocks: how far Λ_t moved from the identity; None without MTL-LoRA."""
    blocks = per_block(model, lambda_shift)
    if blocks is None:
        return None
    columns, values = blocks
    return _task_heatmap(values, task_names, columns,
                         "How far each task's Λ_t moved from its start: ||Λ_t - I|| / ||I||")


def lambda_similarity(model: Any) -> np.ndarray | None:
    """Task x task cosine similarity of what the tasks learned in Λ_t: Λ_t - I (every Λ_t starts at
    the identity, which would make all tasks look alike), flattened and concatenated over layers."""
    import torch

    layers = mtl_layers(model)
    if not layers:
        return None
    with torch.no_grad():
        learned = [layer.task_lambda().float() - torch.eye(layer.rank, device=layer.lora_A.device)
                   for layer in layers.values()]
        flat = torch.cat([update.flatten(1) for update in learned], dim=1)
        flat = torch.nn.functional.normalize(flat, dim=1)
        return (flat @ flat.T).cpu().numpy()


def shared_segment(a: tuple[Sequence[str], Sequence[str]], b: tuple[Sequence[str], Sequence[str]]) -> str:
    """"M" when two tasks name a market in common, "V" a vertical, "MV" both ('*' names none)."""
    named = [set(x) - {"*"} & (set(y) - {"*"}) for x, y in zip(a, b, strict=True)]
    return ("M" if named[0] else "") + ("V" if named[1] else "")


Segments = Mapping[str, tuple[Sequence[str], Sequence[str]]]  # task -> (markets, verticals)


def lambda_similarity_figure(model: Any, task_names: Sequence[str], segments: Segments | None = None) -> Figure | None:
    """Cosine similarity of Λ_t - I between tasks; with ``segments`` the pairs that share a market or
    a vertical are marked M / V."""
    similarity = lambda_similarity(model)
    if similarity is None:
        return None
    n = len(task_names)
    fig, ax = plt.subplots(figsize=(2.5 + 0.7 * n, 2 + 0.7 * n))
    image = ax.imshow(similarity, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(n), task_names, rotation=45, ha="right")
    ax.set_yticks(range(n), task_names)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                mark = ""
                if segments and i != j and task_names[i] in segments and task_names[j] in segments:
                    mark = shared_segment(segments[task_names[i]], segments[task_names[j]])
                ax.text(j, i, f"{similarity[i, j]:.2f}" + (f"\n{mark}" if mark else ""), ha="center", va="center",
                        fontsize=8, fontweight="bold" if mark else "normal")
                if mark:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, linewidth=1.5, edgecolor="black"))
    ax.set_title("cosine similarity of the learned Λ_t - I between tasks"
                 + ("\nboxed: M same market, V same vertical" if segments else ""),
                 fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def distribution_figure(task: str, today: Mapping[str, Any], others: Mapping[str, Mapping[str, Any] | None],
                        title: str = "") -> Figure:
    """A segment's score distribution today against others (reference, previous day): the share of rows
    per fixed bin (evaluation/drift.py) as step lines over [0, 1]."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, dist in {"today": today, **others}.items():
        if not dist or not dist.get("rows"):
            continue
        counts = np.asarray(dist["counts"], dtype=np.float64)
        edges = np.linspace(0.0, 1.0, counts.size + 1)
        ax.stairs(counts / counts.sum(), edges, label=f"{name} ({dist['rows']:,} rows)",
                  linewidth=2.0 if name == "today" else 1.2)
    ax.set_xlabel("score")
    ax.set_ylabel("share of rows")
    ax.set_title(f"{task}{': ' + title if title else ''}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(directory: str | Path, report: Mapping[str, Any], *, labels: Any = None, scores: Any = None,
                tasks: Any = None, model: Any = None, model_tasks: Sequence[str] | None = None,
                segments: Segments | None = None,
                champion_report: Mapping[str, Any] | None = None) -> list[Path]:
    """Write every plot that the inputs allow as PNG under ``directory``; returns their paths.
    ``model_tasks`` names the model's tasks by id (default: the report's tasks); ``segments`` maps a
    task to its (markets, verticals) to mark related tasks."""
    out = Path(directory)
    written = [save(auc_bars_figure(report, champion_report), out / "roc_auc_by_task.png"),
               save(auc_bars_figure(report, champion_report, "pr_auc"), out / "pr_auc_by_task.png")]
    if scores is not None:
        written += [save(roc_figure(labels, scores, tasks), out / "roc.png"),
                    save(pr_figure(labels, scores, tasks), out / "pr.png"),
                    save(calibration_figure(labels, scores, tasks), out / "calibration.png")]
    if model is not None:
        names = list(model_tasks or report["tasks"])
        for name, figure in (("mtl_mixing_concentration.png", mixing_concentration_figure(model, names)),
                             ("mtl_lambda_shift.png", lambda_shift_figure(model, names)),
                             ("mtl_lambda_similarity.png", lambda_similarity_figure(model, names, segments))):
            if figure is not None:
                written.append(save(figure, out / name))
    return written
