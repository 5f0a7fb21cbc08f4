"""`adsrel score` on a tiny artifact: both engines, local-cluster, the registered champion through the
pyfunc, spark_udf and `mlflow models serve`, reconciliation, re-runs, failures and bad arguments."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from evaluation.registry import REGISTERED_MODEL, log_model
from features.candidates import SCORE_COLUMNS
from features.errors import UserError
from models.scoring import Scorer
from pipelines.cli import main
from pipelines.scoring.job import run_score
from pipelines.scoring.model import resolve_model
from tests.servers import free_port, stop, wait_until_answers
from tests.tiny_models import tiny_artifact

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("a", "b", "c")
WORDS = ("shoes", "boots", "hat", "rome", "paris", "hotel", "flights", "loan")
# What the candidates below are rejected for, and how many of them.
EXPECTED_REJECTED = {"missing_query": 2, "missing_ad_id": 1, "no_ad_text": 1, "invalid_market": 2,
                     "missing_vertical": 1, "unmapped": 20}


def candidates(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Raw candidates with the spellings of real logs (case, entities, odd spaces, locale forms),
    some with their own candidate_id, and rows every check rejects."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a, b = rng.choice(WORDS, 2, replace=False)
        rows.append({
            "candidate_id": f"given-{i}" if i % 10 == 0 else None,
            "query": rng.choice([f"  {a.upper()}  {b}", f"buy&nbsp;{a}", f"{a}\u3000{b}", f"best {a}"]),
            "ad_id": f"ad-{i}", "ad_title": rng.choice([f"Book {b} &amp; {a}", f"CHEAP {b}", f"{a} sale"]),
            "ad_description": None if i % 3 else f"{b}  online",
            "display_url": rng.choice([f"{a.upper()}.Example.COM", None]),
            "market": rng.choice(["en-US", "EN-us", "en_US "]), "vertical": str(TASKS[i % 3]),
        })
    for i in range(20):
        rows.append({"query": "shoes", "ad_id": f"u{i}", "ad_title": "shoes", "market": "en-US", "vertical": "zz"})
    rows += [
        {"query": "  ", "ad_id": "x1", "ad_title": "t", "market": "en-US", "vertical": "a"},
        {"query": "&nbsp;", "ad_id": "x2", "ad_title": "t", "market": "en-US", "vertical": "a"},
        {"query": "q", "ad_id": " ", "ad_title": "t", "market": "en-US", "vertical": "a"},
        {"query": "q", "ad_id": "x4", "ad_title": "", "ad_description": " ", "market": "en-US", "vertical": "a"},
        {"query": "q", "ad_id": "x5", "ad_title": "t", "market": "english", "vertical": "a"},
        {"query": "q", "ad_id": "x6", "ad_title": "t", "market": None, "vertical": "a"},
        {"query": "q", "ad_id": "x7", "ad_title": "t", "market": "en-US", "vertical": " "},
    ]
    return pd.DataFrame(rows, columns=["candidate_id", "query", "ad_id", "ad_title", "ad_description", "display_url",
                                       "market", "vertical"])


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return tiny_artifact(tmp_path_factory.mktemp("score") / "model", TASKS, noise=0.1, markets=("en-US",))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("candidates")
    frame = candidates()
    frame.to_parquet(root / "candidates.parquet", index=False)
    frame.to_csv(root / "candidates.csv", index=False)
    with open(root / "candidates.jsonl", "w") as handle:
        for record in frame.to_dict("records"):
            handle.write(json.dumps({k: v for k, v in record.items() if v is not None and v == v}) + "\n")
        handle.write("{this line is not json\n")
    return {"frame": frame, "parquet": root / "candidates.parquet", "csv": root / "candidates.csv",
            "json": root / "candidates.jsonl"}


def scores_of(out: Path) -> pd.DataFrame:
    return ds.dataset(out / "scores").to_table().to_pandas()


def rejected_of(out: Path) -> pd.Series:
    table = ds.dataset(out / "rejected", partitioning="hive", format="parquet").to_table()
    return table.to_pandas()["reason"].astype(str).value_counts()


def expected_scores(artifact: Path, frame: pd.DataFrame) -> pd.Series:
    """What the in-process scorer says of the raw rows that can be scored, by ad_id."""
    scorer = Scorer.load(artifact)
    ok = frame[frame.ad_id.str.startswith("ad-")]
    return pd.Series(scorer.predict(ok), index=ok.ad_id.to_numpy())


def test_local_engine_scores_what_the_scorer_scores_and_counts_every_rejected_row(artifact, inputs, tmp_path):
    summary = run_score(str(artifact), [str(inputs["parquet"])], str(tmp_path / "out"), engine="local",
                        batch_rows=64)
    frame = inputs["frame"]
    assert summary["input_rows"] == len(frame) == summary["scored"] + summary["rejected_rows"]
    assert summary["rejected"] == EXPECTED_REJECTED and summary["scored"] == 200
    scored = scores_of(tmp_path / "out")
    assert list(scored.columns) == list(SCORE_COLUMNS) and len(scored) == 200
    expected = expected_scores(artifact, frame)
    np.testing.assert_allclose(scored.set_index("ad_id").score.loc[expected.index], expected, rtol=0, atol=1e-5)
    given = scored[scored.ad_id.isin([f"ad-{i}" for i in range(0, 200, 10)])]
    assert sorted(given.candidate_id) == sorted(f"given-{i}" for i in range(0, 200, 10))
    assert scored.candidate_id.str.len().drop(given.index).eq(32).all()  # a stable hash where none is given
    assert set(scored.market) == {"en-US"} and set(scored.task) == set(TASKS)
    assert (scored["query"] == scored["query"].str.strip().str.lower()).all()  # normalised as prepare does
    assert set(scored.model_digest) == {summary["model"]["digest"]} and scored.model_version.isna().all()
    assert rejected_of(tmp_path / "out").to_dict() == EXPECTED_REJECTED
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    assert not list((tmp_path / "out").glob(".staging-*"))


def test_spark_engine_gives_the_local_engine_s_rows(artifact, inputs, tmp_path, spark):
    paths = [str(inputs["json"]), str(inputs["csv"])]
    summary = run_score(str(artifact), paths, str(tmp_path / "spark"), spark=spark)
    local = run_score(str(artifact), paths, str(tmp_path / "local"), engine="local")
    assert summary["rejected"] == local["rejected"] == {
        **{k: 2 * v for k, v in EXPECTED_REJECTED.items()}, "malformed_record": 1}
    assert summary["input_rows"] == local["input_rows"] == 2 * len(inputs["frame"]) + 1
    key = ["ad_id", "candidate_id"]
    a = scores_of(tmp_path / "spark").sort_values(key).reset_index(drop=True)
    b = scores_of(tmp_path / "local").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns=["score", "scored_at"]), b.drop(columns=["score", "scored_at"]))
    np.testing.assert_allclose(a.score, b.score, rtol=0, atol=1e-5)
    assert 1 <= summary["model_loads"] <= spark.sparkContext.defaultParallelism
    assert summary["peak_memory_mib"]["python_worker"] > 0
    # without a session given, the run uses the one already running and leaves it up: the caller's
    assert run_score(str(artifact), paths, str(tmp_path / "again"))["input_rows"] == summary["input_rows"]
    assert spark.range(3).count() == 3


@pytest.mark.cluster
def test_spark_engine_on_local_cluster_ships_the_model_and_loads_it_once_per_worker(artifact, inputs, tmp_path):
    """Separate executor JVMs and Python workers; the model and its backbone directory travel with the job;
    with small Arrow batches, each worker still loads the model once."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PYSPARK_SUBMIT_ARGS": "--conf spark.sql.execution.arrow.maxRecordsPerBatch=20 pyspark-shell"}
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "score", "--model", str(artifact), "--candidates",
                          str(inputs["parquet"]), "--output", str(tmp_path / "out"), "--master",
                          "local-cluster[2,1,1024]"], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["scored"] == 200 and summary["rejected"] == EXPECTED_REJECTED
    assert summary["model_loads"] <= 2 < 200 // 20  # two executors, one Python worker each; ten batches
    expected = expected_scores(artifact, inputs["frame"])
    scored = scores_of(tmp_path / "out").set_index("ad_id").score.loc[expected.index]
    np.testing.assert_allclose(scored, expected, rtol=0, atol=1e-5)


def test_a_rerun_replaces_the_output_and_a_failed_run_leaves_it_as_it_was(artifact, inputs, tmp_path):
    out = tmp_path / "out"
    run_score(str(artifact), [str(inputs["parquet"])], str(out), engine="local")
    first = scores_of(out)
    run_score(str(artifact), [str(inputs["parquet"])], str(out), engine="local")
    assert len(scores_of(out)) == len(first) == 200  # replaced, not appended
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    broken = tmp_path / "broken"
    broken.mkdir()
    pq.write_table(pa.Table.from_pandas(inputs["frame"].head(50), preserve_index=False), broken / "a.parquet")
    pq.write_table(pa.Table.from_pandas(inputs["frame"].drop(columns=["market"]), preserve_index=False),
                   broken / "b.parquet")  # found mid-run, after a.parquet's rows were scored
    with pytest.raises(UserError, match="lacks required columns: market"):
        run_score(str(artifact), [str(broken)], str(out), engine="local", batch_rows=10)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before  # staging cleaned up too


@pytest.fixture(scope="module")
def champion(artifact, tmp_path_factory):
    """The tiny artifact registered as ads-relevance v1 with alias champion, in a temporary store."""
    from tests.conftest import temporary_store

    directory = tmp_path_factory.mktemp("mlflow")
    with temporary_store(directory) as uri:
        ref = log_model(artifact)
        mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "champion", ref.version)
        yield uri


def test_the_champion_scores_alike_through_score_pyfunc_spark_udf_and_the_served_model(champion, artifact, inputs,
                                                                                       tmp_path, spark):
    uri = "models:/ads-relevance@champion"
    summary = run_score(uri, [str(inputs["parquet"])], str(tmp_path / "out"), engine="local")
    assert summary["model"]["version"] == "1" and summary["model"]["resolved"] == "models:/ads-relevance/1"
    scored = scores_of(tmp_path / "out")
    assert set(scored.model_name) == {"ads-relevance"} and set(scored.model_version) == {"1"}
    expected = expected_scores(artifact, inputs["frame"])
    ours = scored.set_index("ad_id").score.loc[expected.index]
    rows = inputs["frame"].set_index("ad_id").loc[expected.index].rename_axis("ad_id").reset_index()
    columns = ["query", "ad_title", "ad_description", "display_url", "market", "vertical", "ad_id"]  # the signature's

    pyfunc = mlflow.pyfunc.load_model(uri).predict(rows[columns])
    np.testing.assert_allclose(pyfunc["score"].astype(float), ours, rtol=0, atol=1e-5)
    assert pyfunc["rejected"].isna().all()

    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    positional = [*columns[:6], "task", "ad_id"]  # the signature's order; no task: routed by market, vertical

    def via_udf(frame: pd.DataFrame) -> np.ndarray:
        df = spark.createDataFrame(frame.assign(task=None)[positional].astype(object).where(
            frame.assign(task=None)[positional].notna(), None), schema=", ".join(f"{c} string" for c in positional))
        return df.withColumn("score", udf(*positional)).toPandas()["score"].to_numpy()

    np.testing.assert_allclose(via_udf(rows), ours, rtol=0, atol=1e-5)

    bad = rows[columns].head(4).copy()
    bad.loc[0, "query"], bad.loc[1, "market"], bad.loc[2, "ad_id"] = None, "zz", ""
    with served_model(uri, champion) as post:
        status, served = post(rows[columns])
        assert status == 200 and all(p["rejected"] is None for p in served)
        np.testing.assert_allclose([p["score"] for p in served], ours, rtol=0, atol=1e-5)
        # what batch scoring rejects gets no score and its reason, here and through the pyfunc
        status, answer = post(bad)
        assert status == 200
        assert [p["rejected"] for p in answer] == ["missing_query", "invalid_market", "missing_ad_id", None]
        assert [p["score"] is None for p in answer] == [True, True, True, False]
        local = mlflow.pyfunc.load_model(uri).predict(bad)
        assert local["rejected"].tolist() == ["missing_query", "invalid_market", "missing_ad_id", None]
        assert local["score"].isna().tolist() == [True, True, True, False]
        assert np.isnan(via_udf(bad)).tolist() == [True, True, True, False]
        # a request that cannot be scored at all: 400 with the reason, no stack trace
        status, body = post(rows[columns].drop(columns=["market"]))
        assert status == 400 and body["message"] == "adsrel: request lacks required columns: market", body
        assert "stack_trace" not in body and "Traceback" not in json.dumps(body)


@contextlib.contextmanager
def served_model(uri: str, tracking_uri: str, timeout_s: float = 180.0):
    """`mlflow models serve` on 127.0.0.1; yields ``post(frame) -> (status, predictions or error body)``;
    the server is stopped after."""
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen([str(mlflow_bin), "models", "serve", "-m", uri, "--env-manager", "local", "-h",
                               "127.0.0.1", "-p", str(port), "-w", "1"],
                              env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,  # it execs uvicorn from PATH
                                   "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ['PATH']}"},
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    def post(frame: pd.DataFrame) -> tuple[int, object]:
        body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())["predictions"]
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    try:
        wait_until_answers(f"http://127.0.0.1:{port}/ping", server, timeout_s, lambda: server.stderr.read()[-3000:])
        yield post
    finally:
        stop(server)


def test_an_alias_is_pinned_to_its_version_when_the_run_starts(champion, artifact, tmp_path):
    resolved = resolve_model("models:/ads-relevance@champion")
    client = mlflow.MlflowClient()
    second = tiny_artifact(tmp_path / "other", TASKS, noise=0.1, markets=("en-US",), seed=1)
    client.set_registered_model_alias(REGISTERED_MODEL, "champion", log_model(second).version)  # moved meanwhile
    try:
        assert (resolved.version, resolved.resolved) == ("1", "models:/ads-relevance/1")
        assert resolve_model("models:/ads-relevance@champion").version == "2"
    finally:
        client.set_registered_model_alias(REGISTERED_MODEL, "champion", "1")


@pytest.mark.parametrize("args, message", [
    (["--candidates", "{tmp}/missing.parquet"], "input not found"),
    (["--model", "{tmp}/no-model"], "model not found"),
    (["--model", "models:/ads-relevance"], "names no version or alias"),
    (["--model", "models:/no-such-model@champion"], "cannot resolve"),
    (["--engine", "local", "--master", "local[2]"], "--master is for the Spark engine"),
    (["--candidates", "{tmp}/wrong.parquet"], "lacks required columns: query"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, message, artifact, inputs, tmp_path, capsys, champion):
    pd.DataFrame({"text": ["x"]}).to_parquet(tmp_path / "wrong.parquet")
    base = {"--model": str(artifact), "--candidates": str(inputs["parquet"]), "--output": str(tmp_path / "o"),
            "--engine": "local"}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value.format(tmp=tmp_path)
    assert main(["score", *[x for kv in base.items() for x in kv]]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("adsrel")]
    assert err[-1].startswith("adsrel score: error:") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "o" / "summary.json").exists()


def test_spark_progress_lines_tell_a_long_stage_s_heartbeats_apart(spark, capsys):
    import threading
    import time

    from pipelines.scoring.engine_spark import _report_progress

    def slow(rows):
        time.sleep(2.5)
        return rows

    done = threading.Event()
    reporter = threading.Thread(target=_report_progress, args=(spark, done, 1.0, 2))
    reporter.start()
    try:
        spark.sparkContext.parallelize(range(2), 2).mapPartitions(slow).collect()
    finally:
        done.set()
        reporter.join()
    lines = [line for line in capsys.readouterr().err.splitlines() if "tasks (" in line]
    assert len(lines) >= 2
    assert all(line.startswith("adsrel score: stage ") for line in lines)
    assert all("/2 rows, " in line for line in lines)  # rows read so far, from Spark's live status store
    assert len(set(lines)) == len(lines)  # the elapsed seconds differ even where the counts do not
