"""Applying per-task calibrators: a serving step, so it lives beside the scorer.

A calibrator is a tiny JSON object stored in the model artifact (``calibrators`` in adsrel_model.json;
no pickle), evaluated with numpy only:

- ``{"method": "platt", "a": a, "b": b}``: p' = sigmoid(a · logit(p) + b)
- ``{"method": "isotonic", "x": [...], "y": [...]}``: p' = np.interp(p, x, y) (flat outside [x0, xn])

Fitting them is evaluation's business (evaluation/calibration.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [EPS, 1 - EPS]."""
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def apply_calibrator(calibrator: dict[str, Any], probs: np.ndarray) -> np.ndarray:
    method = calibrator.get("method")
    if method == "platt":
        return 1.0 / (1.0 + np.exp(-(calibrator["a"] * logit(probs) + calibrator["b"])))
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
