"""Per-task probability calibration, stored as plain JSON in the model artifact.

A multi-task model shares one encoder, but each task's score distribution and base rate differ, so
calibration is fitted per task on held-out (valid) scores. The fitted maps are tiny JSON objects
(no pickle) that :func:`apply_calibrators` evaluates with numpy only, inside the one scoring path
(``models.scoring.Scorer``):

- ``{"method": "platt", "a": a, "b": b}``: p' = sigmoid(a · logit(p) + b)
- ``{"method": "isotonic", "x": [...], "y": [...]}``: p' = np.interp(p, x, y) (flat outside [x0, xn])
"""

from __future__ import annotations

from typing import Any

import numpy as np

METHODS = ("none", "platt", "isotonic")
EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_platt(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Logistic regression of the label on logit(p) (nearly unregularised)."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(probs)[:, None], labels)
    return {"method": "platt", "a": float(fit.coef_[0, 0]), "b": float(fit.intercept_[0])}


def fit_isotonic(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Monotone step map p -> positive rate, kept as its breakpoints for np.interp. Its output is
    kept inside [EPS, 1 - EPS] so a calibrated score never claims certainty (finite log loss)."""
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(out_of_bounds="clip", y_min=EPS, y_max=1 - EPS).fit(probs, labels)
    return {"method": "isotonic", "x": [float(v) for v in fit.X_thresholds_],
            "y": [float(v) for v in fit.y_thresholds_]}


def fit_calibrators(labels: Any, probs: Any, tasks: Any, method: str = "platt",
                    min_rows: int = 2) -> dict[str, dict[str, Any]]:
    """One calibrator per task that has both classes and at least ``min_rows`` rows (others get
    none, and keep their raw scores). ``method`` "none" returns {}."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "none":
        return {}
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    names = np.asarray(tasks, dtype=object).reshape(-1)
    if not (y.shape == p.shape == names.shape):
        raise ValueError("labels, probs and tasks must have the same length")
    fit = fit_platt if method == "platt" else fit_isotonic
    out: dict[str, dict[str, Any]] = {}
    for task in sorted(set(names.tolist())):
        rows = names == task
        if rows.sum() >= min_rows and 0 < y[rows].sum() < rows.sum():
            out[str(task)] = fit(y[rows], p[rows])
    return out


def apply_calibrator(calibrator: dict[str, Any], probs: np.ndarray) -> np.ndarray:
    method = calibrator.get("method")
    if method == "platt":
        return 1.0 / (1.0 + np.exp(-(calibrator["a"] * _logit(probs) + calibrator["b"])))
    if method == "isotonic":
        return np.interp(probs, np.asarray(calibrator["x"], dtype=np.float64),
                         np.asarray(calibrator["y"], dtype=np.float64))
    raise ValueError(f"unknown calibrator method {method!r}")


def apply_calibrators(calibrators: dict[str, dict[str, Any]] | None, task_names: Any, probs: Any) -> np.ndarray:
    """Calibrated probabilities: each row through its task's calibrator; rows of tasks without one
    are returned unchanged."""
    out = np.asarray(probs, dtype=np.float64).copy()
    if not calibrators:
        return out
    names = np.asarray(task_names, dtype=object).reshape(-1)
    if names.shape != out.shape:
        raise ValueError("task_names and probs must have the same length")
    for task, calibrator in calibrators.items():
        rows = names == task
        if rows.any():
            out[rows] = apply_calibrator(calibrator, out[rows])
    return out
