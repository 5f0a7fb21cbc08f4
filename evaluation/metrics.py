"""Offline metrics of a binary relevance scorer, per task, macro and micro.

Small pure numpy functions (scikit-learn conventions: ``labels`` in {0, 1}, ``scores`` higher = more
relevant). A metric that a task's data cannot define (ROC AUC of a task with one class) is ``None``
and :func:`task_metrics` says why in ``reasons``; the other metrics of that task are still computed.

ROC AUC and average precision are computed from the score-sorted, tie-grouped counts of positives
and negatives. The same code takes bootstrap resamples as count matrices (one row per resample), so
the confidence intervals are a few vectorised numpy passes instead of a Python loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RECALL_LEVELS = (0.5, 0.8, 0.9)
PRECISION_LEVELS = (0.9,)
ECE_BINS = 10
EPS = 1e-15
# Metrics that need both classes; the ones macro averages; n and positives are summed instead.
RANKING_METRICS = ("roc_auc", "pr_auc", *(f"precision_at_recall_{r}" for r in RECALL_LEVELS),
                   *(f"recall_at_precision_{p}" for p in PRECISION_LEVELS))
CI_METRICS = ("roc_auc", "pr_auc")
COUNT_METRICS = ("n", "positives")
# Cells of a bootstrap count matrix processed at once (memory bound: ~8 bytes per cell, a few arrays).
_CHUNK_CELLS = 4_000_000


def _check(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} != {s.shape[0]}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y.astype(np.int8), s


def class_reason(labels: Any) -> str | None:
    """Why ranking metrics are undefined for ``labels`` (None when both classes are present)."""
    y = np.asarray(labels)
    if y.size == 0:
        return "undefined: no rows"
    positives = int(y.sum())
    if positives == 0:
        return "undefined: only negatives"
    if positives == y.size:
        return "undefined: only positives"
    return None


def _grouped(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by descending score, and the group (distinct score) of each row in that order."""
    order = np.argsort(-s, kind="mergesort")
    sorted_scores = s[order]
    new_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    return order, np.cumsum(new_group) - 1


def _group_counts(weights: np.ndarray, y: np.ndarray, order: np.ndarray,
                  group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative counts per score group (descending), [resamples, groups]. ``weights``
    are given in score order (row counts of a resample); each group is a contiguous slice summed by
    one ``reduceat``."""
    w = weights
    ys = y[order].astype(np.float64)
    if not ys.size:
        return np.zeros((w.shape[0], 0)), np.zeros((w.shape[0], 0))
    starts = np.flatnonzero(np.r_[True, np.diff(group) > 0])
    pos = np.add.reduceat(w * ys, starts, axis=1)
    neg = np.add.reduceat(w * (1.0 - ys), starts, axis=1)
    return pos, neg


def _auc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC AUC per row; ties count one half. NaN where a row lacks a class."""
    neg_below = neg[:, ::-1].cumsum(axis=1)[:, ::-1] - neg  # negatives with a lower score
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, wins / total, np.nan)


def _ap_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision per row: sum over thresholds of (R_k - R_{k-1}) * P_k (as scikit-learn)."""
    tp, fp = pos.cumsum(axis=1), neg.cumsum(axis=1)
    total = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        ap = (pos * precision).sum(axis=1) / total
        return np.where((total > 0) & (neg.sum(axis=1) > 0), ap, np.nan)


def _score_group_counts(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Positives and negatives per distinct score (one unit weight per row); None with one class."""
    y, s = _check(labels, scores)
    if class_reason(y):
        return None
    order, group = _grouped(y, s)
    return _group_counts(np.ones((1, y.size)), y, order, group)


def roc_auc(labels: Any, scores: Any) -> float | None:
    """Area under the ROC curve (ties count one half); None when ``labels`` hold one class."""
    counts = _score_group_counts(labels, scores)
    return None if counts is None else float(_auc_from_counts(*counts)[0])


def pr_auc(labels: Any, scores: Any) -> float | None:
    """Average precision (area under the step precision-recall curve); None with one class."""
    counts = _score_group_counts(labels, scores)
    return None if counts is None else float(_ap_from_counts(*counts)[0])


def precision_recall_points(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and threshold at every distinct score (descending thresholds)."""
    y, s = _check(labels, scores)
    order, group = _grouped(y, s)
    pos, neg = _group_counts(np.ones((1, y.size)), y, order, group)
    tp, fp = pos[0].cumsum(), neg[0].cumsum()
    thresholds = s[order][np.r_[True, np.diff(group) > 0]]
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / max(tp[-1] if tp.size else 0.0, 1.0)
    return precision, recall, thresholds


def precision_at_recall(labels: Any, scores: Any, recall: float) -> float | None:
    """Best precision among thresholds whose recall is >= ``recall``; None with one class."""
    if class_reason(labels):
        return None
    p, r, _ = precision_recall_points(labels, scores)
    return float(p[r >= recall - 1e-12].max())


def recall_at_precision(labels: Any, scores: Any, precision: float) -> float | None:
    """Best recall among thresholds whose precision is >= ``precision`` (0.0 when no threshold
    reaches it); None with one class."""
    if class_reason(labels):
        return None
    p, r, _ = precision_recall_points(labels, scores)
    ok = p >= precision - 1e-12
    return float(r[ok].max()) if ok.any() else 0.0


def precision_recall_at_threshold(labels: Any, scores: Any, threshold: float = 0.5
                                  ) -> tuple[float | None, float | None]:
    """Precision and recall of the decision ``score >= threshold``: precision is None when nothing is
    predicted relevant, recall None when there are no positives."""
    y, s = _check(labels, scores)
    predicted = s >= threshold
    tp = int((predicted & (y == 1)).sum())
    precision = tp / int(predicted.sum()) if predicted.any() else None
    recall = tp / int(y.sum()) if y.sum() else None
    return precision, recall


def log_loss(labels: Any, probs: Any) -> float | None:
    """Mean negative log-likelihood, probabilities clipped to [1e-15, 1 - 1e-15]; None without rows."""
    y, p = _check(labels, probs)
    if not y.size:
        return None
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(labels: Any, probs: Any) -> float | None:
    """Mean squared error of the probabilities; None without rows."""
    y, p = _check(labels, probs)
    return float(np.mean((p - y) ** 2)) if y.size else None


def ece(labels: Any, probs: Any, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error: |mean prob - positive rate| per equal-width bin on [0, 1],
    weighted by the bin's share of rows (a score of exactly 1 falls in the last bin)."""
    y, p = _check(labels, probs)
    if not y.size:
        return None
    index = np.clip((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, weights=p, minlength=bins) - np.bincount(index, weights=y, minlength=bins))
    return float(gap.sum() / count.sum())


def bootstrap_values(labels: Any, scores: Any, *, resamples: int = 1000, seed: int = 0
                     ) -> dict[str, np.ndarray] | None:
    """ROC AUC and average precision of each of ``resamples`` bootstrap resamples of the rows (NaN
    where a resample lost a class); None with one class or resamples < 1."""
    y, s = _check(labels, scores)
    if resamples < 1 or class_reason(y):
        return None
    rng = np.random.default_rng(seed)
    order, group = _grouped(y, s)
    n = y.size
    aucs, aps = [], []
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        # resampling the sorted rows is resampling the rows: no gather into score order needed
        pos, neg = _group_counts(weights, y, order, group)
        aucs.append(_auc_from_counts(pos, neg))
        aps.append(_ap_from_counts(pos, neg))
    return {"roc_auc": np.concatenate(aucs), "pr_auc": np.concatenate(aps)}


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The central ``level`` percentile interval of the finite ``values``; None when there are none."""
    values = values[~np.isnan(values)]
    tail = (1 - level) / 2 * 100
    return (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))) if values.size else None


def bootstrap_ci(labels: Any, scores: Any, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
                 ) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap interval of ROC AUC and average precision (rows resampled with
    replacement; resamples that lose a class are left out). None with one class or resamples < 1."""
    values = bootstrap_values(labels, scores, resamples=resamples, seed=seed)
    return {m: None if values is None else percentile_interval(values[m], level) for m in CI_METRICS}


def macro_bootstrap_ci(labels: Any, scores: Any, tasks: Any, *, resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap interval of the macro (mean over tasks) ROC AUC and average precision:
    each resample resamples every task's rows within the task and averages the tasks' values; a task
    with one class, or a resample in which a task lost one, leaves that resample out."""
    y, s = _check(labels, scores)
    names = np.asarray(tasks, dtype=object)
    per_task = [bootstrap_values(y[names == t], s[names == t], resamples=resamples, seed=seed + i)
                for i, t in enumerate(dict.fromkeys(names.tolist()))]
    if not per_task or any(v is None for v in per_task):
        return {m: None for m in CI_METRICS}
    return {m: percentile_interval(np.mean([v[m] for v in per_task], axis=0), level) for m in CI_METRICS}


def paired_bootstrap_auc_delta(labels: Any, scores_a: Any, scores_b: Any, *, resamples: int = 1000, seed: int = 0,
                               level: float = 0.95) -> dict[str, float] | None:
    """ROC AUC of ``scores_b`` minus that of ``scores_a`` on the same rows, with a percentile bootstrap
    interval in which both models are scored on the same resampled rows (paired: the rows' own
    difficulty cancels out). ``{"delta", "low", "high", "resamples"}`` (resamples that lose a class
    are left out); None with one class or resamples < 1."""
    y, a = _check(labels, scores_a)
    _, b = _check(labels, scores_b)
    if resamples < 1 or class_reason(y):
        return None
    orders = [_grouped(y, s) for s in (a, b)]
    auc_a, auc_b = (float(_auc_from_counts(*_group_counts(np.ones((1, y.size)), y, o, g))[0]) for o, g in orders)
    rng, n, deltas = np.random.default_rng(seed), y.size, []
    chunk = max(1, _CHUNK_CELLS // max(2 * n, 1))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        resampled_a, resampled_b = (_auc_from_counts(*_group_counts(weights[:, o], y, o, g)) for o, g in orders)
        deltas.append(resampled_b - resampled_a)
    values = np.concatenate(deltas)
    values = values[~np.isnan(values)]
    if not values.size:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"delta": auc_b - auc_a, "low": float(low), "high": float(high), "resamples": int(values.size)}


def task_metrics(labels: Any, scores: Any, *, threshold: float = 0.5, bootstrap: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """Every metric of one task (``scores`` are probabilities). Undefined metrics are None and
    ``reasons[metric]`` says why; ``<m>_ci_low``/``<m>_ci_high`` hold the bootstrap 95% interval."""
    y, s = _check(labels, scores)
    reason = class_reason(y)
    out: dict[str, Any] = {"n": int(y.size), "positives": int(y.sum())}
    out["roc_auc"] = roc_auc(y, s)
    out["pr_auc"] = pr_auc(y, s)
    for r in RECALL_LEVELS:
        out[f"precision_at_recall_{r}"] = precision_at_recall(y, s, r)
    for p in PRECISION_LEVELS:
        out[f"recall_at_precision_{p}"] = recall_at_precision(y, s, p)
    out["precision_at_threshold"], out["recall_at_threshold"] = precision_recall_at_threshold(y, s, threshold)
    out["log_loss"], out["brier"], out["ece"] = log_loss(y, s), brier(y, s), ece(y, s)
    ci = bootstrap_ci(y, s, resamples=bootstrap, seed=seed)
    for name in CI_METRICS:
        low_high = ci[name]
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low_high if low_high else (None, None)
    reasons: dict[str, str] = {}
    if reason:
        reasons.update({m: reason for m in RANKING_METRICS})
    if out["precision_at_threshold"] is None:
        reasons["precision_at_threshold"] = f"undefined: no score >= {threshold}"
    if out["recall_at_threshold"] is None:
        reasons["recall_at_threshold"] = "undefined: no positives"
    if not y.size:
        reasons.update({m: "undefined: no rows" for m in ("log_loss", "brier", "ece")})
    if bootstrap >= 1 and not reason:
        reasons.update({f"{m}_ci": "undefined: every resample lost a class" for m in CI_METRICS
                        if out[f"{m}_ci_low"] is None})
    out["reasons"] = reasons
    return out


METRIC_KEYS = ("n", "positives", *RANKING_METRICS, "precision_at_threshold", "recall_at_threshold", "log_loss",
               "brier", "ece", *(f"{m}_ci_{side}" for m in CI_METRICS for side in ("low", "high")))


def macro_average(per_task: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean over the tasks where each metric is defined (n and positives are summed); ``tasks`` says
    how many tasks each mean covers. The mean of per-task interval bounds is no interval of the
    mean, so the ``*_ci_*`` values are None here (:func:`evaluate_tasks` bootstraps the mean itself)."""
    out: dict[str, Any] = {m: int(sum(t.get(m) or 0 for t in per_task.values())) for m in COUNT_METRICS}
    covered: dict[str, int] = {}
    for metric in METRIC_KEYS:
        if metric in COUNT_METRICS:
            continue
        if "_ci_" in metric:
            out[metric] = None
            continue
        values = [t[metric] for t in per_task.values() if t.get(metric) is not None]
        out[metric] = float(np.mean(values)) if values else None
        covered[metric] = len(values)
    out["tasks"] = covered
    return out


def evaluate_tasks(labels: Any, scores: Any, tasks: Sequence[str] | np.ndarray, *, threshold: float = 0.5,
                   bootstrap: int = 1000, seed: int = 0, task_order: Sequence[str] | None = None
                   ) -> dict[str, Any]:
    """``{"tasks": {task: metrics}, "macro": {...}, "micro": {...}}``; micro pools every row.
    ``task_order`` lists tasks to report even when they have no rows here."""
    y, s = _check(labels, scores)
    names = np.asarray(tasks, dtype=object)
    present = list(dict.fromkeys(names.tolist()))
    order = list(task_order) + [t for t in present if t not in task_order] if task_order else sorted(present)
    per_task = {}
    for i, task in enumerate(order):
        rows = names == task
        per_task[task] = task_metrics(y[rows], s[rows], threshold=threshold, bootstrap=bootstrap, seed=seed + i)
    micro = task_metrics(y, s, threshold=threshold, bootstrap=bootstrap, seed=seed + len(order))
    macro = macro_average(per_task)
    defined = [t for t in order if per_task[t].get("roc_auc") is not None]  # the tasks the macro averages
    rows = np.isin(names, defined)
    if defined and bootstrap > 0:
        for metric, bounds in macro_bootstrap_ci(y[rows], s[rows], names[rows], resamples=bootstrap,
                                                 seed=seed + len(order) + 1).items():
            macro[f"{metric}_ci_low"], macro[f"{metric}_ci_high"] = bounds if bounds else (None, None)
    return {"tasks": per_task, "macro": macro, "micro": micro}
