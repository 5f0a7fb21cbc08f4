"""Where the ads-relevance experiment keeps its artifacts (MLflow on a temporary sqlite store)."""

import mlflow
import pytest

from evaluation.tracking import EXPERIMENT, artifact_location, experiment_id, set_experiment


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:////srv/mlflow/mlflow.db", "file:///srv/mlflow/mlruns"),
        ("sqlite:////srv/mlflow/mlflow.db?timeout=20", "file:///srv/mlflow/mlruns"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("http://mlflow.internal:5000", None),
        ("databricks", None),
    ],
)
def test_artifact_location_is_beside_a_local_sqlite_database_only(uri, expected):
    assert artifact_location(uri) == expected


def test_a_relative_sqlite_database_is_resolved_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert artifact_location("sqlite:///stores/mlflow.db") == (tmp_path / "stores" / "mlruns").as_uri()


def test_run_artifacts_land_beside_the_store_not_in_the_working_directory(mlflow_store, tmp_path_factory,
                                                                             monkeypatch):
    store, elsewhere = mlflow_store, tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    set_experiment()
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "note.txt")
    first = experiment_id()
    assert experiment_id() == first  # found again, not created twice
    assert mlflow.get_experiment(first).name == EXPERIMENT
    # a model-training experiment to MLflow 3's UI, not a GenAI one
    assert mlflow.get_experiment(first).tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.experiment_id == first
    assert list(store.glob("mlruns/**/note.txt")), "the artifact is not under the store's mlruns"
    assert not any(elsewhere.iterdir()), f"the working directory got {sorted(p.name for p in elsewhere.iterdir())}"
