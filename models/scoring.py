"""Scoring query-ad pairs with a model artifact: the one path every scorer takes (evaluation, the
MLflow pyfunc, batch scoring), so text building, task routing and calibration cannot drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from features.task_map import parse_task_map
from features.tokenize import PairEncoder
from models.artifact import TOKENIZER_DIR, ArtifactError, load_model, read_metadata
from models.calibration import apply_calibrators

DEFAULT_MAX_LENGTH = 128


class Scorer:
    """``Scorer.load(model_dir).predict(frame)`` -> relevance probabilities in [0, 1].

    ``frame`` has query, ad_title, ad_description, display_url and the task as ``task`` (name),
    ``task_id``, or ``market`` + ``vertical`` (mapped through the task map stored in the artifact).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, meta: dict[str, Any], *, batch_size: int = 256):
        self.model = model.eval()
        self.meta = meta
        self.batch_size = batch_size
        tasks = sorted(meta.get("tasks") or [], key=lambda t: t["id"])
        if not tasks:
            raise ArtifactError("the model artifact has no task list")
        self.task_names = [t["name"] for t in tasks]
        self.task_map = parse_task_map({"tasks": tasks, "unmapped": meta.get("unmapped", "quarantine")})
        self.encoder = PairEncoder(tokenizer, int(meta.get("max_length") or DEFAULT_MAX_LENGTH),
                                   segment=bool(meta.get("segment_in_text")))

    @classmethod
    def load(cls, model_dir: str | Path, *, batch_size: int = 256) -> Scorer:
        from transformers import AutoTokenizer

        meta = read_metadata(model_dir)
        tokenizer_dir = Path(model_dir) / TOKENIZER_DIR
        if not tokenizer_dir.is_dir():
            raise ArtifactError(f"{model_dir} has no {TOKENIZER_DIR}/")
        return cls(load_model(model_dir), AutoTokenizer.from_pretrained(str(tokenizer_dir)), meta,
                   batch_size=batch_size)

    def task_ids(self, frame: pd.DataFrame) -> np.ndarray:
        if "task" in frame.columns:
            index = {name: i for i, name in enumerate(self.task_names)}
            unknown = sorted(set(frame["task"]) - set(index))
            if unknown:
                raise ValueError(f"tasks unknown to this model: {', '.join(map(str, unknown[:5]))}")
            return frame["task"].map(index).to_numpy(dtype=np.int64)
        if "task_id" in frame.columns:
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

    @torch.inference_mode()
    def logits(self, frame: pd.DataFrame) -> np.ndarray:
        task_ids = self.task_ids(frame)
        encoded = self.encoder.encode(frame)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        out = np.empty(len(frame), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.encoder.pad(encoded, rows)
            out[rows] = self.model(**batch, task_ids=torch.from_numpy(task_ids[rows])).float().numpy()
        return out

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        probs = 1.0 / (1.0 + np.exp(-self.logits(frame).astype(np.float64)))
        calibrators = self.meta.get("calibrators")
        if calibrators:
            names = np.asarray(self.task_names, dtype=object)[self.task_ids(frame)]
            probs = apply_calibrators(calibrators, names, probs)
        return probs
