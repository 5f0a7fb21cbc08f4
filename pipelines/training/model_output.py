"""The model directory `adsrel train` writes (``--output``): the best model so far as an artifact
(models/artifact.py), replaced atomically, optionally calibrated; nothing else lives there."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.progress import log
from models.artifact import META_FILE, TOKENIZER_DIR, WEIGHTS_FILE, save_model
from models.relevance import RelevanceModel
from pipelines.training.config import TrainConfig
from pipelines.training.teacher import Teacher

ARTIFACT_FILES = (WEIGHTS_FILE, TOKENIZER_DIR, META_FILE)  # in the order they are replaced: metadata last
# Where versions before checkpoints moved out kept them, inside the model directory.
LEGACY_CHECKPOINTS = "checkpoints"


def clear_model_dir(output: Path) -> None:
    """A fresh run: nothing of an earlier run in ``output`` may pass for this one's result."""
    for name in ARTIFACT_FILES:
        target = output / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    legacy = output / LEGACY_CHECKPOINTS
    if legacy.is_dir():
        shutil.rmtree(legacy)
        log("train", f"removed {legacy}: checkpoints no longer live inside the model directory")


def save_artifact(model: RelevanceModel, output: Path, tokenizer: Any, manifest: dict, digest: str,
                  config: TrainConfig, names: list[str], step: int, valid: dict, *, train_rows: int,
                  teacher: Teacher | None = None) -> None:
    """The model artifact at the root of ``output`` (written beside, then moved over the old files)."""
    output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".artifact-", dir=output))
    save_model(model, staging, tokenizer=tokenizer, tasks=manifest["tasks"], unmapped=manifest.get("unmapped"),
               max_length=config.max_length, segment_in_text=config.segment_in_text, calibrators=None,
               data={"manifest_digest": digest, "train_rows": train_rows}, train_config=config.to_dict(), step=step,
               valid=valid, task_names=names, teacher=None if teacher is None else
               {"uri": teacher.uri, "version": teacher.version, "digest": teacher.digest})
    for name in ARTIFACT_FILES:
        target = output / name
        if target.is_dir():
            shutil.rmtree(target)
        if (staging / name).exists():
            (staging / name).replace(target)
    shutil.rmtree(staging, ignore_errors=True)


def calibrate_artifact(output: Path, frame: pd.DataFrame, names: list[str], method: str) -> dict[str, Any]:
    """Fit per-task calibrators (evaluation.calibration) on the best model's scores of the valid frame
    and store them as ``calibrators`` in its adsrel_model.json, which the Scorer then applies."""
    from evaluation.calibration import fit_calibrators
    from models.scoring import Scorer

    scorer = Scorer.load(output)
    scorer.meta["calibrators"] = None  # fit on raw scores, even if an earlier run left calibrators
    probs = scorer.predict(frame)
    tasks = np.asarray(names, dtype=object)[frame["task_id"].to_numpy(dtype=np.int64)]
    calibrators = fit_calibrators(frame["label"].to_numpy(), probs, tasks, method)
    meta_path = output / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["calibrators"] = calibrators or None
    staged = meta_path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    staged.replace(meta_path)
    return calibrators
