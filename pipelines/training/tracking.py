"""The MLflow record of a training run: params, tags and the task mix when it starts, train and valid
metrics as it goes, the model (logged and registered) when it ends. A resumed run continues the same
MLflow run; a finished run run again logs nothing more."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd

from evaluation.registry import log_model, logged_model
from evaluation.tracking import MODEL_DIGEST_TAG, VERSION_TAG, set_experiment
from features.progress import log
from features.shards import TEXT_COLUMNS
from models.artifact import model_digest
from pipelines.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]  # the checkout, for its git commit


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flat_params(config: TrainConfig) -> dict[str, str]:
    return {k: json.dumps(v) if isinstance(v, list | dict) else str(v) for k, v in config.to_dict().items()}


class TrainTracker:
    """One MLflow run of the ads-relevance experiment (new, named ``name``, or the one ``run_id`` names)."""

    def __init__(self, run_id: str | None, name: str) -> None:
        import mlflow

        set_experiment()
        # A name of our own: MLflow's random names come from Python's random, which training seeds,
        # so every run of one seed would get the same one.
        self.run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=name)
        self.run_id = self.run.info.run_id

    def start(self, config: TrainConfig, tags: dict[str, str], mix: dict[str, float], rows: dict[str, int]) -> None:
        """What a new run records once: the resolved config, where it came from, the task mix."""
        import mlflow

        mlflow.log_params(flat_params(config))
        mlflow.set_tags({"git_commit": git_commit(), "stage": "train", **tags})
        mlflow.log_dict({"task_sampling_probabilities": mix, "train_rows": rows}, "task_mix.json")

    def log_train(self, stats: dict[str, float], step: int) -> None:
        import mlflow

        mlflow.log_metrics({f"train/{k}": v for k, v in stats.items()}, step=step)

    def log_valid(self, valid: dict[str, float | None], step: int) -> None:
        import mlflow

        mlflow.log_metrics({f"valid/{k}/roc_auc": v for k, v in valid.items() if v is not None}, step=step)

    def fail(self, interrupted: bool) -> None:
        import mlflow

        mlflow.end_run(status="KILLED" if interrupted else "FAILED")

    def finish(self, output: Path, *, finished_before: bool, best: tuple[float | None, int | None],
               example: pd.DataFrame | None, register: bool, version_tags: dict[str, str] | None = None) -> str | None:
        """Logs (and registers) the model in ``output`` and ends the run; returns its registered version.

        A run that was finished before this call may have logged its model already (unless the call
        that finished it failed after its last checkpoint): then nothing is logged again.
        """
        import mlflow

        try:
            logged = logged_model(self.run_id) if finished_before else None
            if logged is not None:
                log("train", f"the model of run {self.run_id} is logged already ({logged.model_uri}): not logged again")
                version = logged.version
            else:
                best_auc, best_step = best
                if best_auc is not None:
                    mlflow.log_metrics({"train/best_macro_roc_auc": best_auc, "train/best_step": float(best_step)})
                version = log_model(output, register=register, input_example=example, version_tags=version_tags).version
            # one filter (tags.`adsrel.model_digest` or tags.`adsrel.version`) finds its evaluations too
            mlflow.set_tags({MODEL_DIGEST_TAG: model_digest(output), **({VERSION_TAG: version} if version else {})})
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run()
        return version


def input_example(valid_frame: pd.DataFrame, names: list[str]) -> pd.DataFrame | None:
    """A real row of a task the model knows, as the registered signature's example."""
    if not len(valid_frame):
        return None
    return valid_frame.head(1)[list(TEXT_COLUMNS)].assign(task=names[int(valid_frame["task_id"].iloc[0])])
