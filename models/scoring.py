"""Scoring query-ad pairs with a model artifact: the one path every scorer takes (evaluation, the
MLflow pyfunc, batch scoring), so text normalisation, text building, task routing and calibration
cannot drift apart.

Text goes through prepare's own normalisation (features/text.py, idempotent), so a raw candidate
scores exactly as its normalised spelling does. Rows are scored grouped by task, each large group
with that task's update folded into the weights (``merge(task)``: no adapter cost at all), in
batches of similar length cut to a token budget (little padding, large matrix products).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from features.candidates import CANDIDATE_COLUMNS, REQUIRED_COLUMNS, check_candidates
from features.task_map import TaskMap
from features.text import normalise_pair_columns
from features.tokenize import PairEncoder
from models.artifact import TOKENIZER_DIR, ArtifactError, load_model, read_metadata, stored_task_map
from models.calibration import apply_calibrators

DEFAULT_MAX_LENGTH = 128
TEXT_COLUMNS = ("query", "ad_title", "ad_description", "display_url")
# A task with fewer rows than this in one call is scored unmerged, with the other small ones: folding
# an update into every adapted weight costs about what scoring this many pairs does.
MIN_MERGE_ROWS = 32


def length_batches(lengths: np.ndarray, rows: np.ndarray, *, tokens: int, max_rows: int) -> list[np.ndarray]:
    """``rows`` sorted by length and cut into batches of at most ``tokens`` padded tokens and
    ``max_rows`` rows (one row at least)."""
    ordered = rows[np.argsort(lengths[rows], kind="stable")]
    batches, start = [], 0
    while start < len(ordered):
        end = start + 1
        while end < len(ordered) and end - start < max_rows and (end + 1 - start) * lengths[ordered[end]] <= tokens:
            end += 1
        batches.append(ordered[start:end])
        start = end
    return batches


def normalised_texts(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The pair text columns of ``frame`` as prepare normalises them (absent or null parts empty)."""
    columns = {}
    for name in TEXT_COLUMNS:
        values = frame[name] if name in frame.columns else pd.Series([None] * len(frame), dtype=object)
        columns[name] = pa.array(values.astype(object).where(values.notna(), None).tolist(), pa.string())
    return {name: [v or "" for v in values.to_pylist()] for name, values in normalise_pair_columns(columns).items()}


class CandidateScoring:
    """Routing rows to tasks and scoring candidate rows as batch scoring does, for any scorer with a
    ``task_map``, ``task_names`` and ``predict``: a plain model's :class:`Scorer`, or a routed one
    (models/routing.py)."""

    task_map: TaskMap
    task_names: list[str]

    def predict(self, frame: pd.DataFrame, *, merge: bool = True) -> np.ndarray:
        raise NotImplementedError

    def source_versions(self, tasks: Sequence[str]) -> list[str | None] | None:
        """The registered version whose parameters score each task's rows; None: this model's own."""
        return None

    def task_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's task id, from ``task``, ``task_id`` or ``market`` + ``vertical``, the first given
        (a column of nulls, as MLflow passes an optional column of the signature, is not given)."""

        def given(column: str) -> bool:
            return column in frame.columns and bool(frame[column].notna().any())

        if given("task"):
            index = {name: i for i, name in enumerate(self.task_names)}
            unknown = sorted(set(frame["task"]) - set(index))
            if unknown:
                raise ValueError(f"tasks unknown to this model: {', '.join(map(str, unknown[:5]))}")
            return frame["task"].map(index).to_numpy(dtype=np.int64)
        if given("task_id"):
            ids = frame["task_id"].to_numpy(dtype=np.int64)
            if len(ids) and (ids.min() < 0 or ids.max() >= len(self.task_names)):
                raise ValueError(f"task_id outside 0..{len(self.task_names) - 1}")
            return ids
        if {"market", "vertical"} <= set(frame.columns):
            tasks = [self.task_map.task_for(m, v) for m, v in zip(frame["market"], frame["vertical"], strict=True)]
            missing = sum(t is None for t in tasks)
            if missing:
                raise ValueError(f"{missing} rows match no task of this model (and it has no catch-all task)")
            return np.array([t.id for t in tasks], dtype=np.int64)
        raise ValueError("frame needs a task, task_id, or market and vertical column")

    def score_candidates(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Scores of candidate rows checked as batch scoring checks them (features.candidates): a row
        that cannot be scored gets a null ``score`` and its reason in ``rejected``; never a made-up
        score. A row that names its ``task`` is routed by it (an unknown name is ``unmapped``) and only
        its text is checked; any other row is checked and routed as batch scoring does it. Raises
        ValueError for a frame without the columns to score it."""
        named = frame["task"].notna().to_numpy() if "task" in frame.columns else np.zeros(len(frame), dtype=bool)
        needed = REQUIRED_COLUMNS if (~named).any() else ("query", "ad_title")
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"request lacks required columns: {', '.join(missing)}")
        rejected = np.full(len(frame), None, dtype=object)
        scores = np.full(len(frame), np.nan)
        for rows, score in ((named, self._score_named), (~named, self._score_checked)):
            if rows.any():
                scores[rows], rejected[rows] = score(frame[rows])
        # nullable floats: null (not NaN) in JSON, and still numbers for spark_udf's double
        score = pd.Series(pd.array(scores, dtype="Float64"), index=frame.index)
        return pd.DataFrame({"score": score, "rejected": rejected}, index=frame.index)

    def _score_named(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Rows routed by their task name: their text checked as batch scoring checks it."""
        texts = normalised_texts(frame)
        known = frame["task"].isin(self.task_names).to_numpy()
        rejected = np.array(["unmapped" if not k else "missing_query" if not q else "no_ad_text" if not (t or d)
                             else None for k, q, t, d in zip(known, texts["query"], texts["ad_title"],
                                                             texts["ad_description"], strict=True)], dtype=object)
        return self._score_accepted(frame, rejected)

    def _score_checked(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Rows routed by market and vertical, through batch scoring's own check."""
        table = pa.table({c: pa.array([None if pd.isna(v) else str(v) for v in frame[c]], pa.string())
                          for c in CANDIDATE_COLUMNS if c in frame.columns})  # as read: text
        checked = check_candidates(table, self.task_map)
        return self._score_accepted(checked.to_pandas(), np.array(checked["reason"].to_pylist(), dtype=object))

    def _score_accepted(self, frame: pd.DataFrame, rejected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full(len(frame), np.nan)
        ok = np.array([r is None for r in rejected], dtype=bool)
        if ok.any():  # every accepted row has its task by name now
            scores[ok] = self.predict(frame[ok])
        return scores, rejected


class Scorer(CandidateScoring):
    """``Scorer.load(model_dir).predict(frame)`` -> relevance probabilities in [0, 1].

    ``frame`` has query, ad_title, ad_description, display_url (raw or normalised: the same score)
    and the task as ``task`` (name), ``task_id``, or ``market`` + ``vertical`` (mapped through the
    task map stored in the artifact).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, meta: dict[str, Any], *, batch_tokens: int = 8192,
                 max_batch: int = 256) -> None:
        self.model = model.eval()
        self.meta = meta
        self.batch_tokens, self.max_batch = batch_tokens, max_batch
        self.task_map = stored_task_map(meta)
        self.task_names = [t.name for t in self.task_map.tasks]
        self.encoder = PairEncoder(tokenizer, int(meta.get("max_length") or DEFAULT_MAX_LENGTH),
                                   segment=bool(meta.get("segment_in_text")))
        self.mergeable = bool(getattr(model, "encoder", None) is not None and model.encoder.layers)

    @classmethod
    def load(cls, model_dir: str | Path, *, backbone: str | None = None, base: torch.nn.Module | None = None,
             tokenizer: Any = None, **kwargs: Any) -> Scorer:
        """The scorer of the (plain) artifact in ``model_dir``; ``backbone`` overrides where its frozen
        base model is loaded from (the same weights elsewhere: fingerprint-checked), ``base`` and
        ``tokenizer`` are given already loaded (models/routing.py shares them between sources)."""
        from transformers import AutoTokenizer

        meta = read_metadata(model_dir)
        if meta.get("method") == "routed":
            raise ArtifactError(f"{model_dir} is a routed model: load it with models.routing.load_scorer")
        if tokenizer is None:
            tokenizer_dir = Path(model_dir) / TOKENIZER_DIR
            if not tokenizer_dir.is_dir():
                raise ArtifactError(f"{model_dir} has no {TOKENIZER_DIR}/")
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        return cls(load_model(model_dir, backbone=backbone, base=base), tokenizer, meta, **kwargs)

    def texts(self, frame: pd.DataFrame) -> dict[str, list]:
        """The pair text columns of ``frame`` as prepare normalises them (absent or null parts empty)."""
        out = normalised_texts(frame)
        if self.encoder.segment:
            out.update(market=list(frame["market"]), vertical=list(frame["vertical"]))
        return out

    def logits(self, frame: pd.DataFrame, *, merge: bool = True) -> np.ndarray:
        """Raw logits of every row; ``merge`` folds each large task group's update into the weights."""
        return self._logits(frame, self.task_ids(frame), merge)

    @torch.inference_mode()
    def _logits(self, frame: pd.DataFrame, task_ids: np.ndarray, merge: bool) -> np.ndarray:
        encoded = self.encoder.encode(self.texts(frame))
        lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
        out = np.empty(len(frame), dtype=np.float32)
        groups: list[tuple[int | None, np.ndarray]] = []
        if merge and self.mergeable:
            counts = np.bincount(task_ids, minlength=len(self.task_names))
            large = [t for t in range(len(self.task_names)) if counts[t] >= MIN_MERGE_ROWS]
            groups = [(t, np.flatnonzero(task_ids == t)) for t in large]
            rest = np.flatnonzero(~np.isin(task_ids, large))
        else:
            rest = np.arange(len(frame))
        if rest.size:
            groups.append((None, rest))
        for task, rows in groups:
            if task is not None:
                self.model.merge(task)
            try:
                for batch_rows in length_batches(lengths, rows, tokens=self.batch_tokens, max_rows=self.max_batch):
                    batch = self.encoder.pad(encoded, batch_rows)
                    ids = torch.from_numpy(task_ids[batch_rows])
                    out[batch_rows] = self.model(**batch, task_ids=ids).float().numpy()
            finally:
                if task is not None:
                    self.model.unmerge()
        return out

    def predict(self, frame: pd.DataFrame, *, merge: bool = True) -> np.ndarray:
        task_ids = self.task_ids(frame)  # once: routing by market and vertical is a Python loop over rows
        probs = 1.0 / (1.0 + np.exp(-self._logits(frame, task_ids, merge).astype(np.float64)))
        calibrators = self.meta.get("calibrators")
        if calibrators:
            names = np.asarray(self.task_names, dtype=object)[task_ids]
            probs = apply_calibrators(calibrators, names, probs)
        return probs
