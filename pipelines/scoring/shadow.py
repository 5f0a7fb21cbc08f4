"""How a shadow model's scores compare with the model's, per segment, for the run's summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.candidates import read_scored_rows


def spearman(a: pd.Series, b: pd.Series) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None with under two rows or a constant side."""
    if len(a) < 2:
        return None
    ra, rb = a.rank().to_numpy(), b.rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def shadow_summary(scores_dir: str | Path) -> dict[str, Any]:
    """Per segment of the scored rows under ``scores_dir``: rows, rows the shadow scored, the mean
    absolute difference of the two scores and their rank correlation, over the rows both scored."""
    frame = read_scored_rows(scores_dir, ["task", "score", "shadow_score"]).to_pandas()
    tasks: dict[str, Any] = {}
    for task, rows in frame.groupby("task", sort=True):
        both = rows.dropna(subset=["shadow_score"])
        difference = (both["score"] - both["shadow_score"]).abs()
        tasks[str(task)] = {"rows": int(len(rows)), "shadow_scored": int(len(both)),
                            "mean_abs_diff": float(difference.mean()) if len(both) else None,
                            "rank_correlation": spearman(both["score"], both["shadow_score"])}
    return {"tasks": tasks, "shadow_unscored": int(frame["shadow_score"].isna().sum())}
