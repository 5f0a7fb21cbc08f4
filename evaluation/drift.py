"""Score distributions per segment and how far one has moved from another: the reference a version
keeps of its scores on its evaluation split, and the population stability index (PSI) that
monitoring compares a day's scores with. Small pure numpy functions, like evaluation/metrics.py.

Scores are probabilities, so the bins are fixed: ``BINS`` equal-width bins over [0, 1]. A bin empty on
one side would make the PSI infinite; proportions are floored at ``PSI_FLOOR`` (the usual convention),
so the PSI stays finite and a bin that empties still counts, heavily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# 10 bins, the usual PSI practice: on two samples of n and m rows without any drift the PSI is about
# (BINS - 1) * (1/n + 1/m), so more bins would need more rows per segment to stay below the thresholds
BINS = 10
EDGES = np.linspace(0.0, 1.0, BINS + 1)
PSI_FLOOR = 1e-4
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def histogram(scores: Any) -> np.ndarray:
    """Counts of ``scores`` in the ``BINS`` fixed bins over [0, 1] (1.0 falls in the last bin)."""
    s = np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), 0.0, 1.0)
    return np.histogram(s, bins=EDGES)[0].astype(np.int64)


def distribution(scores: Any) -> dict[str, Any]:
    """A segment's score distribution: rows, histogram counts, quantiles, mean and share above 0.5."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not s.size:
        return {"rows": 0, "counts": [0] * BINS, "quantiles": None, "mean": None, "share_above_0.5": None}
    return {"rows": int(s.size), "counts": histogram(s).tolist(),
            "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(s, QUANTILES), strict=True)},
            "mean": float(s.mean()), "share_above_0.5": float((s > 0.5).mean())}


def reference(scores: Any, tasks: Sequence[str] | np.ndarray) -> dict[str, Any]:
    """Per segment (task) the :func:`distribution` of its scores: what a version keeps of its evaluation."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    names = np.asarray(tasks, dtype=object)
    return {"bins": BINS, "tasks": {str(t): distribution(s[names == t]) for t in sorted(set(names.tolist()))}}


def psi(expected: Sequence[float], actual: Sequence[float]) -> float | None:
    """Population stability index of ``actual`` against ``expected`` (counts or proportions over the
    same bins): sum over bins of (a - e) * ln(a / e), proportions floored at ``PSI_FLOOR``. None when
    either side has no rows. 0 = the same distribution; by convention < 0.1 stable, 0.1-0.25 a shift
    worth a look, > 0.25 a large shift."""
    e, a = (np.asarray(x, dtype=np.float64) for x in (expected, actual))
    if e.shape != a.shape:
        raise ValueError(f"the two distributions have different bins: {e.shape[0]} != {a.shape[0]}")
    if e.sum() <= 0 or a.sum() <= 0:
        return None
    e, a = (np.maximum(x / x.sum(), PSI_FLOOR) for x in (e, a))
    return float(np.sum((a - e) * np.log(a / e)))
