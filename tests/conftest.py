"""Fixtures shared by the tests: one local Spark session, temporary MLflow stores, a tiny random
backbone and tiny prepared shards (nothing is downloaded; every store lives under a temporary
directory)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: runs Spark on local-cluster (separate executor JVMs); part of make test"
    )
    if not os.environ.get("ADSREL_LOG_DIR"):  # the CLI's library logs of this run, not the user's cache
        import tempfile

        os.environ["ADSREL_LOG_DIR"] = tempfile.mkdtemp(prefix="adsrel-test-logs-")


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for every Spark test (starting a JVM per test would dominate the run)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pipelines.spark import build_session

    session = build_session(
        "adsrel-tests",
        "local[2]",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
        },
    )
    yield session
    session.stop()


@contextlib.contextmanager
def temporary_store(directory: Path) -> Iterator[str]:
    """MLflow on ``directory``/mlflow.db (environment and client), restored to the default after."""
    import mlflow

    uri = f"sqlite:///{directory}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(None)


@pytest.fixture
def mlflow_store(tmp_path) -> Iterator[Path]:
    """A fresh MLflow store for one test; yields its directory."""
    with temporary_store(tmp_path):
        yield tmp_path


@pytest.fixture(scope="module")
def module_mlflow_store(tmp_path_factory) -> Iterator[Path]:
    """One MLflow store shared by the tests of a module; yields its directory."""
    directory = tmp_path_factory.mktemp("mlflow")
    with temporary_store(directory):
        yield directory


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A tiny random BERT and its word-level tokenizer, usable wherever a backbone reference goes."""
    from tests.tiny_models import tiny_backbone_dir

    return tiny_backbone_dir(tmp_path_factory.mktemp("backbone"))


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Prepared shards of tasks a, b, c (240/160/80 rows; task b has the opposite rule). Read-only:
    a test that changes shards writes its own with tests.shard_data.write_shards."""
    from tests.shard_data import write_shards

    return write_shards(tmp_path_factory.mktemp("shards"))
