"""MLflow tracking: the store, the ads-relevance experiment, and the names every stage records under.

Tracking URI: MLFLOW_TRACKING_URI if set, else MLflow's default (sqlite:///mlflow.db in the working
directory). The constants here are the contract between the stage that writes a run and the one that
reads it back (promotion reuses evaluation runs by their tags).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

EXPERIMENT = "ads-relevance"
MONITORING_EXPERIMENT = "ads-relevance-monitoring"  # one run per monitored day (pipelines/monitoring)

# Tags of an evaluation run (besides stage=evaluate): which model, which data, which split.
MODEL_URI_TAG = "adsrel.model_uri"
MODEL_DIGEST_TAG = "adsrel.model_digest"
MANIFEST_DIGEST_TAG = "adsrel.manifest_digest"
SPLIT_TAG = "adsrel.split"
EVALUATED_RUN_TAG = "adsrel.evaluated_run_id"
# MLflow 3's UI reads it to class an experiment as model training rather than GenAI (its sidebar then
# lists "Training runs"); which page opens first is still the browser's Model training / GenAI switch.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
VERSION_TAG = "adsrel.version"  # the registered version a training or evaluation run is of, when there is one
EVAL_IDENTITY_TAGS = (MODEL_DIGEST_TAG, MANIFEST_DIGEST_TAG, SPLIT_TAG)

# Artifacts of an evaluation run.
REPORT_ARTIFACT = "evaluation_report.json"
TABLE_ARTIFACT = "evaluation_table.json"
MARKDOWN_ARTIFACT = "evaluation_table.md"
# each evaluated row's example_id, task, label and score: what the per-segment gate pairs two models on
SCORES_ARTIFACT = "evaluation_scores.parquet"
# per segment, the distribution of those scores (evaluation/drift.py): what monitoring compares a day with
REFERENCE_ARTIFACT = "score_reference.json"
PLOTS_DIR = "plots"


def day_step(day: date) -> int:
    """A day as an MLflow step (days since 1970-01-01): series over days chart on a day axis."""
    return (day - date(1970, 1, 1)).days


def ui_links(base: str = "http://127.0.0.1:5000") -> list[str]:
    """Where analysts start in the MLflow UI of the current store: each adsrel experiment's runs, in the
    UI's model-training mode (MLflow 3 otherwise opens an experiment on its GenAI overview; the mode
    then sticks in the browser)."""
    import mlflow

    mode = "workflowType=machine_learning"
    links = []
    for name in (EXPERIMENT, MONITORING_EXPERIMENT):
        found = mlflow.MlflowClient().get_experiment_by_name(name)
        if found is not None:
            links.append(f"{name}: {base}/#/experiments/{found.experiment_id}/runs?{mode}")
    return links or [f"experiments: {base}/#/experiments?{mode}"]


def log_day_metrics(metrics: dict[str, float], day: date) -> None:
    """``metrics`` in the active run as points of ``day``: step :func:`day_step` and timestamp noon UTC
    of that day, so a chart's x-axis set to time reads the days as dates (a backfilled day too)."""
    import mlflow

    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    mlflow.log_metrics(metrics, step=day_step(day), timestamp=int(noon.timestamp() * 1000))


def tracking_uri() -> str:
    import mlflow

    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


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


def experiment_id(name: str | None = None) -> str:
    """The experiment ``name``, by default ads-relevance (MLFLOW_EXPERIMENT_NAME overrides that, as in
    MLflow), on the tracking URI of MLFLOW_TRACKING_URI (or MLflow's default), created with
    :func:`artifact_location` and :data:`EXPERIMENT_KIND` if new."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(tracking_uri()), tags=EXPERIMENT_KIND)
    except MlflowException:  # created meanwhile by another process
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def set_experiment() -> None:
    """Makes :func:`experiment_id` the active experiment."""
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id())
