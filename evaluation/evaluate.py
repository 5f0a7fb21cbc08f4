"""Offline evaluation of a model artifact on one split of prepared shards, and its MLflow record.

``evaluate_model`` scores the split through the one scoring path (``models.scoring.Scorer``: text,
task routing and calibration exactly as in serving) and returns the report of the design contract:
``{"tasks": {task: metrics}, "macro": {...}, "micro": {...}}`` plus where the model and the data came
from. ``log_evaluation`` records it in MLflow (metrics ``eval/<task>/<metric>``, the per-task table,
the report JSON, plots, the evaluated dataset) in a run tagged with the model and data identities.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.drift import reference
from evaluation.metrics import evaluate_tasks
from evaluation.registry import load_model_scorer, registered_version, resolve_model_dir, training_run_id
from evaluation.tracking import (
    EVALUATED_RUN_TAG,
    MANIFEST_DIGEST_TAG,
    MARKDOWN_ARTIFACT,
    MODEL_DIGEST_TAG,
    MODEL_URI_TAG,
    PLOTS_DIR,
    REFERENCE_ARTIFACT,
    REPORT_ARTIFACT,
    SCORES_ARTIFACT,
    SPLIT_TAG,
    TABLE_ARTIFACT,
    VERSION_TAG,
    set_experiment,
)
from features.errors import UserError
from features.progress import log as progress_log
from features.shards import MODEL_COLUMNS, manifest_digest, read_split
from models.artifact import model_digest
from models.routing import RoutedScorer
from models.scoring import Scorer

# Columns of the printed / logged table, in order.
TABLE_METRICS = ("n", "positives", "roc_auc", "pr_auc", "precision_at_recall_0.8", "recall_at_precision_0.9",
                 "precision_at_threshold", "recall_at_threshold", "log_loss", "brier", "ece")


def log(message: str) -> None:
    progress_log("evaluate", message)


@dataclass
class Evaluation:
    """A report with what produced it: the scored rows (example_id, task, label, score) and the scorer."""

    report: dict[str, Any]
    scored: pd.DataFrame
    scorer: Any


def run_evaluation(model: str | Path, shards: str | Path, *, split: str = "test", bootstrap: int = 1000,
                   threshold: float = 0.5, seed: int = 0) -> Evaluation:
    """Score ``split`` of ``shards`` with ``model`` (directory, runs:/ or models:/ URI) and measure it."""
    if bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0, got {bootstrap}")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"threshold must be in [0, 1], got {threshold}")
    frame = read_split(shards, split, columns=MODEL_COLUMNS)  # checks the manifest and the split first
    model_dir = resolve_model_dir(str(model))
    scorer = load_model_scorer(model_dir)
    log(f"scoring {len(frame)} rows of split {split!r} ({frame['task'].nunique()} tasks) with {model}")
    try:
        scores = scorer.predict(frame)
    except ValueError as exc:
        raise UserError(f"the model cannot score these shards: {exc}") from None
    labels = frame["label"].to_numpy().astype(np.int64)
    tasks = frame["task"].to_numpy(dtype=object)
    log(f"metrics with {bootstrap} bootstrap resamples")
    report = evaluate_tasks(labels, scores, tasks, threshold=threshold, bootstrap=bootstrap, seed=seed,
                            task_order=scorer.task_names)
    meta = scorer.meta
    metas = [s.meta for s in scorer.sources.values()] if isinstance(scorer, RoutedScorer) else [meta]
    report["model"] = {"uri": str(model), "dir": str(model_dir), "method": meta.get("method"),
                       "digest": model_digest(model_dir), "calibrated": any(m.get("calibrators") for m in metas),
                       "training_run_id": training_run_id(str(model)),
                       "training_manifest_digest": (meta.get("data") or {}).get("manifest_digest")}
    report["data"] = {"shards": str(Path(shards).resolve()), "split": split, "rows": len(frame),
                      "manifest_digest": manifest_digest(shards)}
    report["settings"] = {"threshold": threshold, "bootstrap": bootstrap, "seed": seed, "ci_level": 0.95}
    report["complete"] = True
    scored = pd.DataFrame({"example_id": frame["example_id"].to_numpy(dtype=object), "task": tasks, "label": labels,
                           "score": scores})
    return Evaluation(report=report, scored=scored, scorer=scorer)


def evaluate_model(model: str | Path, shards: str | Path, *, split: str = "test", bootstrap: int = 1000,
                   threshold: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """The evaluation report (JSON-serialisable) of ``model`` on ``split`` of ``shards``."""
    return run_evaluation(model, shards, split=split, bootstrap=bootstrap, threshold=threshold, seed=seed).report


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{value:.4f}"


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task, then macro and micro: the metrics of TABLE_METRICS, the ROC AUC interval and
    why undefined metrics are undefined."""
    rows = []
    scopes = [(task, m) for task, m in report["tasks"].items()] + [("macro", report["macro"]),
                                                                   ("micro", report["micro"])]
    for name, metrics in scopes:
        row: dict[str, Any] = {"task": name}
        row.update({m: metrics.get(m) for m in TABLE_METRICS})
        low, high = metrics.get("roc_auc_ci_low"), metrics.get("roc_auc_ci_high")
        row["roc_auc_95ci"] = f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else None
        reasons = metrics.get("reasons") or {}
        row["note"] = "; ".join(sorted(set(reasons.values()))) if reasons else ""
        rows.append(row)
    return rows


def markdown_table(report: dict[str, Any]) -> str:
    """The per-task table (plus macro and micro) as GitHub markdown."""
    rows = table_rows(report)
    columns = ["task", "n", "positives", "roc_auc", "roc_auc_95ci", *TABLE_METRICS[3:], "note"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = [row[c] if c in ("task", "note", "roc_auc_95ci") and row[c] is not None else _fmt(row[c])
                 for c in columns]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def metric_items(report: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics ``eval/<task>/<metric>``, ``eval/macro/...``, ``eval/micro/...`` (numbers only)."""
    out: dict[str, float] = {}
    scopes = list(report["tasks"].items()) + [("macro", report["macro"]), ("micro", report["micro"])]
    for name, metrics in scopes:
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                continue
            if math.isfinite(float(value)):
                out[f"eval/{name}/{key}"] = float(value)
    return out


def _log_dataset(data: dict[str, Any]) -> None:
    """The evaluated shards and split as the MLflow dataset input of the active run."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    name = Path(data["shards"]).name or "shards"
    digest = data["manifest_digest"].split(":", 1)[-1][:32]  # MLflow keeps at most 36 characters
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local directory it is
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(data["shards"])
    mlflow.log_input(MetaDataset(source, name=f"{name}/{data['split']}", digest=digest), context=data["split"])


def _version_of(uri: str) -> str | None:
    try:
        return registered_version(uri)
    except UserError:
        return None


def evaluation_run_name(info: dict[str, Any], data: dict[str, Any], version: str | None) -> str:
    """``eval-<method>-v<version>-<split>`` (a registered model) or ``eval-<method>-<directory>-<split>``:
    the runs list says which model each evaluation is of."""
    who = f"v{version}" if version else Path(info["dir"]).name
    return f"eval-{info.get('method')}-{who}-{data['split']}"


def log_evaluation(report: dict[str, Any], *, run_id: str | None = None,
                   champion_report: dict[str, Any] | None = None, scored: pd.DataFrame | None = None,
                   model: Any = None) -> str:
    """Record ``report`` in MLflow and return the run id: in ``run_id`` if given, else a new run of the
    ads-relevance experiment. Tags name the model (uri, digest, its training run) and the data
    (manifest digest, split). ``scored`` (example_id, task, label, score rows) adds ROC/PR/calibration
    plots, is kept as SCORES_ARTIFACT (the per-segment gate pairs two models' scores on it) and its
    distribution per segment as REFERENCE_ARTIFACT (evaluation/drift.py: what monitoring compares a day
    with); ``model`` (or the report's model directory) adds the MTL-LoRA structure plots."""
    import mlflow

    from evaluation.plots import write_plots

    info, data = report["model"], report["data"]
    tags = {"stage": "evaluate", MODEL_URI_TAG: info["uri"], MODEL_DIGEST_TAG: info["digest"],
            MANIFEST_DIGEST_TAG: data["manifest_digest"], SPLIT_TAG: data["split"],
            "method": str(info.get("method"))}
    if info.get("training_run_id"):
        tags[EVALUATED_RUN_TAG] = info["training_run_id"]
    model_tasks = segments = None
    if model is None and info.get("method") == "mtl_lora" and Path(info["dir"]).is_dir():
        model = Scorer.load(info["dir"])
    if isinstance(model, RoutedScorer):  # the structure plots are of one model's adapters
        model = None
    if isinstance(model, Scorer):
        segments = {t.name: (t.markets, t.verticals) for t in model.task_map.tasks}
        model, model_tasks = model.model, model.task_names
    if run_id is None:
        set_experiment()
    version = _version_of(info["uri"])
    if version:
        tags[VERSION_TAG] = version
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else evaluation_run_name(info, data, version)) as run:
        mlflow.set_tags(tags)
        mlflow.log_params({"eval.split": data["split"], "eval.threshold": report["settings"]["threshold"],
                           "eval.bootstrap": report["settings"]["bootstrap"]})
        mlflow.log_metrics(metric_items(report))
        table = pd.DataFrame(table_rows(report))
        mlflow.log_table(data=table, artifact_file=TABLE_ARTIFACT)
        mlflow.log_text(markdown_table(report), MARKDOWN_ARTIFACT)
        mlflow.log_dict(report, REPORT_ARTIFACT)
        _log_dataset(data)
        if scored is not None:
            with tempfile.TemporaryDirectory(prefix="adsrel-scores-") as tmp:
                scored.to_parquet(Path(tmp) / SCORES_ARTIFACT, index=False)
                mlflow.log_artifact(str(Path(tmp) / SCORES_ARTIFACT))
            mlflow.log_dict(reference(scored["score"].to_numpy(), scored["task"].to_numpy(dtype=object)),
                            REFERENCE_ARTIFACT)
        with tempfile.TemporaryDirectory(prefix="adsrel-plots-") as tmp:
            kwargs = {}
            if scored is not None:
                kwargs = {"labels": scored["label"].to_numpy(), "scores": scored["score"].to_numpy(),
                          "tasks": scored["task"].to_numpy(dtype=object)}
            write_plots(tmp, report, model=model, model_tasks=model_tasks, segments=segments,
                        champion_report=champion_report, **kwargs)
            mlflow.log_artifacts(tmp, PLOTS_DIR)
        return run.info.run_id
