"""Scoring the accepted candidates of one batch, the same in both engines: the model's score, the
version whose parameters scored each row, and the shadow model's score beside it."""

from __future__ import annotations

import pyarrow as pa

from features.candidates import scored_rows


def score_rows(scorer, accepted: pa.Table, model_version: str | None, shadow=None) -> pa.Table:
    """``accepted`` (rows of features.candidates.check_candidates that can be scored) as
    features.candidates.ROW_SCHEMA. The shadow scorer routes each row by its own task map and checks
    it as batch scoring does: a row it cannot score gets a null shadow_score, never a made-up one."""
    frame = accepted.to_pandas()
    scores = scorer.predict(frame)
    sources = scorer.source_versions(frame["task"]) or [model_version] * len(frame)
    shadow_scores = None
    if shadow is not None:
        shadow_scores = shadow.score_candidates(frame.drop(columns=["task", "task_id"]))["score"].astype(object)
        shadow_scores = shadow_scores.where(shadow_scores.notna(), None).tolist()
    return scored_rows(accepted, scores, sources, shadow_scores)
