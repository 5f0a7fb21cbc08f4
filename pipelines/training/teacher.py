"""A teacher's probabilities on the train split, for distillation (``--set teacher=URI``).

The teacher (any adsrel model: plain or routed, any method and backbone) scores the train split once
with the scorer every stage uses (models.scoring: its text, routing and calibration), and the result is
kept in the ``teacher_cache`` directory under the teacher's digest, the manifest's digest and the trained
tasks: a re-run, a resumed run or another student of the same teacher on the same data and tasks reads
it instead of scoring again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.registry import load_model_scorer, registered_version, resolve_model_dir, versions_with_digest
from features.errors import UserError
from features.progress import log
from features.shards import MODEL_COLUMNS, read_split
from models.artifact import ArtifactError, model_digest, read_metadata


@dataclass(frozen=True)
class Teacher:
    """Who taught (its URI, registered version if any, digest) and its probability of every train row."""

    uri: str
    version: str | None
    digest: str
    probabilities: dict[tuple[int, str], float]

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """The teacher's probability of each row of ``frame`` (task_id, example_id), in its order."""
        try:
            return np.array([self.probabilities[(int(t), e)] for t, e in
                             zip(frame["task_id"], frame["example_id"], strict=True)], dtype=np.float32)
        except KeyError as exc:
            raise UserError(f"the teacher has no score for train row {exc.args[0]}: its cache does not match "
                            "these shards") from None

    def tags(self) -> dict[str, str]:
        """What the student's MLflow run and registered version say of it."""
        return {"adsrel.teacher.uri": self.uri, "adsrel.teacher.version": self.version or "",
                "adsrel.teacher.digest": self.digest}


def _cache_file(cache: Path, digest: str, data_digest: str, tasks: list[str]) -> Path:
    short = lambda d: d.split(":", 1)[-1][:16]  # noqa: E731
    trained = hashlib.sha256(",".join(sorted(tasks)).encode()).hexdigest()[:8]  # a student of some tasks only
    return cache / f"{short(digest)}-{short(data_digest)}-{trained}.parquet"


def load_teacher(uri: str, shards: Path, names: list[str], trained: list[int], data_digest: str,
                 cache: Path, *, registry: bool = False) -> Teacher:
    """The teacher's probabilities of the train rows of tasks ``trained`` (ids into ``names``), scored
    now or read from ``cache``. A teacher that does not know every trained task is a UserError.
    ``registry``: a teacher given as a directory is looked up in the registry by its digest, so the
    student names its version (the last registered with that digest)."""
    model_dir = resolve_model_dir(uri)
    try:
        meta = read_metadata(model_dir)
    except ArtifactError as exc:
        raise UserError(f"teacher: {exc}") from None
    known = {t["name"] for t in meta.get("tasks") or []}
    missing = [names[t] for t in trained if names[t] not in known]
    if missing:
        raise UserError(f"teacher {uri} does not know task(s) {', '.join(missing)} of these shards: a teacher's "
                        "task map must cover the student's tasks")
    digest, version = model_digest(model_dir), registered_version(uri)
    if version is None and registry:
        import mlflow

        version = (versions_with_digest(mlflow.MlflowClient(), digest) or [None])[-1]
    path = _cache_file(cache, digest, data_digest, [names[t] for t in trained])
    if path.is_file():
        frame = pd.read_parquet(path)
        log("train", f"teacher {uri} ({digest[:19]}): its scores of the train split read from {path}")
    else:
        frame = _score(model_dir, uri, shards, names, trained)
        cache.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(dir=cache, prefix=f".{path.stem}-", suffix=".tmp")  # one per writer
        os.close(handle)
        frame.to_parquet(staged, index=False)
        os.replace(staged, path)  # whole or not at all: a killed run leaves no half cache
    keys = zip(frame["task_id"].astype(int), frame["example_id"], strict=True)
    probabilities = dict(zip(keys, frame["teacher_probability"].astype(float), strict=True))
    return Teacher(uri=uri, version=version, digest=digest, probabilities=probabilities)


def _score(model_dir: Path, uri: str, shards: Path, names: list[str], trained: list[int]) -> pd.DataFrame:
    frame = read_split(shards, "train", columns=MODEL_COLUMNS)
    frame = frame[frame["task_id"].isin(trained)].reset_index(drop=True)
    scorer = load_model_scorer(model_dir, "the teacher")
    log("train", f"teacher {uri}: scoring the {len(frame)} train rows once")
    # by task name: the teacher's own task ids may differ from these shards'
    probs = scorer.predict(frame.assign(task=np.asarray(names, dtype=object)[frame["task_id"].to_numpy()]))
    return pd.DataFrame({"task_id": frame["task_id"].to_numpy(dtype=np.int64),
                         "example_id": frame["example_id"].astype(str).to_numpy(),
                         "teacher_probability": probs.astype(np.float64)})
