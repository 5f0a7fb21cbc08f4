"""Fitting per-task probability calibrators on held-out (valid) scores.

A multi-task model shares one encoder, but each task's score distribution and base rate differ, so
calibration is fitted per task. The fitted maps are the plain JSON objects that
:mod:`models.calibration` applies inside the one scoring path (``models.scoring.Scorer``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.calibration import EPS, logit

METHODS = ("none", "platt", "isotonic")


def fit_platt(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Logistic regression of the label on logit(p) (nearly unregularised)."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6, max_iter=1000).fit(logit(probs)[:, None], labels)
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
