"""Per-task validation during training: ROC AUC of each task on (a sample of) the valid split, and
their macro mean, which selects the best model and drives early stopping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from evaluation.metrics import roc_auc
from features.shards import MODEL_COLUMNS, read_table, split_files
from features.tokenize import PairEncoder


def validation_frame(shards: Path, names: list[str], ids: list[int], max_rows: int, seed: int) -> pd.DataFrame:
    """The valid rows of the tasks trained on, at most ``max_rows`` per task (a seeded sample)."""
    files = split_files(shards, "valid")
    frames = []
    for t in ids:
        if names[t] not in files:
            continue
        frame = read_table(files[names[t]], MODEL_COLUMNS).to_pandas()
        if len(frame) > max_rows:
            frame = frame.sample(n=max_rows, random_state=seed)
        frames.append(frame.assign(task_id=t))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(MODEL_COLUMNS))


@torch.inference_mode()
def validate(model: torch.nn.Module, encoder: PairEncoder, frame: pd.DataFrame, names: list[str],
             accelerator: Any, batch_size: int) -> dict[str, float | None]:
    """Per-task ROC AUC on ``frame`` (each process scores a slice; scores are gathered) + ``macro``,
    the mean over the tasks where it is defined."""
    from accelerate.utils import gather_object

    if not len(frame):
        return {}
    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = np.arange(rank, len(frame), world)
    encoded = encoder.encode(frame.iloc[mine].reset_index(drop=True))
    task_ids = frame["task_id"].to_numpy(dtype=np.int64)[mine]
    order = np.argsort([len(x) for x in encoded["input_ids"]], kind="stable")
    scores = np.empty(len(mine), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = {k: v.to(accelerator.device) for k, v in encoder.pad(encoded, rows).items()}
        with accelerator.autocast():
            logits = model(**batch, task_ids=torch.from_numpy(task_ids[rows]).to(accelerator.device))
        scores[rows] = logits.float().cpu().numpy()
    pairs = list(zip(mine.tolist(), scores.tolist(), strict=True))
    if world > 1:
        pairs = gather_object(pairs)
    all_scores = np.empty(len(frame), dtype=np.float64)
    for index, score in pairs:
        all_scores[index] = score
    model.train()
    labels, tasks = frame["label"].to_numpy(), frame["task_id"].to_numpy()
    result: dict[str, float | None] = {}
    for t in sorted(set(tasks.tolist())):
        rows = tasks == t
        result[names[t]] = roc_auc(labels[rows], all_scores[rows])
    defined = [v for v in result.values() if v is not None]
    result["macro"] = float(np.mean(defined)) if defined else None
    return result
