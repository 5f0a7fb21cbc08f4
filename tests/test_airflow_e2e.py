"""End to end: `airflow dags test` (Airflow 3 of .venv-airflow, `make airflow`) runs every stage of
ads_relevance_retrain with the real adsrel CLI of .venv (ADSREL_BIN) against a real `mlflow server` process
on 127.0.0.1 (MLFLOW_TRACKING_URI, as workers on several machines would share one), on tiny synthetic logs
and a tiny training config:

1. week 1 trains, registers and promotes the first champion, and emits the promoted-model Asset (which
   queues ads_relevance_batch_score);
2. the same date again registers nothing, trains nothing and moves no alias;
3. ads_relevance_batch_score scores candidates with models:/ads-relevance@champion into <root>/<date>/;
4. week 2 (another date, new logs) trains a new model, which the gate promotes or keeps with reasons: the
   run succeeds either way.

The first model needs only a permissive gate (the promotion_policy Param): 20 steps on a few thousand rows
learn little, and their test split has few rows per task.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port, stop, wait_until_answers

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = ROOT / ".venv-airflow" / "bin" / "airflow"
ADSREL = ROOT / ".venv" / "bin" / "adsrel"
MLFLOW = ROOT / ".venv" / "bin" / "mlflow"
MODEL = "ads-relevance"
WEEK_ROWS, CANDIDATES = 3000, 300
# tiny but real: all-MiniLM-L6-v2, 8 steps of 8 pairs of 32 tokens
TRAIN_SET = ["max_steps=8", "batch_size=8", "max_length=32", "eval_every=8"]
PERMISSIVE_POLICY = "macro_floor: 0.0\nmin_task_rows: 1\nmin_task_positives: 1\nmin_task_negatives: 1\n"
CANDIDATE_COLUMNS = ["query", "ad_id", "ad_title", "ad_description", "display_url", "market", "vertical"]
WEEK1, WEEK2, SCORE_DAY, NEXT_DAY = "2026-01-04", "2026-01-11", "2026-01-05", "2026-01-06"


@dataclass
class World:
    root: Path
    uri: str
    env: dict[str, str]
    done: dict[str, bool] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.root / "out"


def _run(cmd: list, *, env=None, cwd=None, timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd[:3]} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
    return done


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not AIRFLOW.exists():
        pytest.fail(f"{AIRFLOW} is missing: run `make airflow` (make test builds it)")
    root = tmp_path_factory.mktemp("airflow-e2e")
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ADSREL_", "MLFLOW_"))}
    server_log = open(root / "mlflow-server.log", "w")  # closed below
    server = subprocess.Popen(
        [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env={**base, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, cwd=root, stdout=server_log,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        env = {**base, "AIRFLOW_HOME": str(root / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "airflow_dags"),
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
               "MLFLOW_TRACKING_URI": uri, "ADSREL_BIN": str(ADSREL), "ADSREL_SPARK_MASTER": "local[2]"}
        # while the server starts: two weeks of logs (one synth job, cut in two), candidates, the Airflow database
        _run([ADSREL, "synth", "--output", root / "logs", "--rows", 2 * WEEK_ROWS, "--seed", 7, "--master", "local[2]"],
             cwd=root, env=base, timeout=300)
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        logs = ds.dataset(root / "logs").to_table()
        for week, rows in (("w1", logs.slice(0, WEEK_ROWS)), ("w2", logs.slice(WEEK_ROWS))):
            (root / f"logs-{week}").mkdir()
            pq.write_table(rows, root / f"logs-{week}" / "part-0.parquet")
        pq.write_table(logs.slice(WEEK_ROWS, CANDIDATES).select(CANDIDATE_COLUMNS), root / "candidates.parquet")
        (root / "policy.yaml").write_text(PERMISSIVE_POLICY)
        _run([AIRFLOW, "db", "migrate"], env=env, cwd=root, timeout=300)
        wait_until_answers(f"{uri}/health", server, 180, lambda: (root / "mlflow-server.log").read_text()[-3000:])
        yield World(root, uri, env)
    finally:
        stop(server)
        server_log.close()


def dags_test(world: World, dag_id: str, date: str, conf: dict, *, succeeds: bool = True) -> str:
    """`airflow dags test DAG DATE -c CONF`: the run must succeed (or, ``succeeds=False``, fail); returns
    its log (the task logs too)."""
    done = subprocess.run([str(AIRFLOW), "dags", "test", dag_id, date, "-c", json.dumps(conf)], env=world.env,
                          cwd=world.root, capture_output=True, text=True, timeout=1200)
    log = done.stdout + done.stderr
    (world.root / f"{dag_id}-{date}-{time.monotonic_ns()}.log").write_text(log)
    if succeeds:
        assert done.returncode == 0, f"{dag_id} {date} failed:\n{log[-6000:]}"
        assert "state=success" in log and "DagRun failed" not in log
    else:
        assert "DagRun failed" in log, log[-6000:]
    return log


def retrain(world: World, date: str, logs: str) -> tuple[str, dict]:
    conf = {"logs": [str(world.root / logs)], "task_map": str(ROOT / "configs" / "tasks.yaml"),
            "train_config": None, "train_set": TRAIN_SET, "output_root": str(world.out),
            "promotion_policy": str(world.root / "policy.yaml")}
    log = dags_test(world, "ads_relevance_retrain", date, conf)
    return log, json.loads((world.out / date / "promotion.json").read_text())


def registry(world: World) -> dict:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=world.uri, registry_uri=world.uri)
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    aliases = dict(client.get_registered_model(MODEL).aliases) if versions else {}
    experiment = client.get_experiment_by_name(MODEL)
    train_runs = client.search_runs([experiment.experiment_id], "tags.stage = 'train'") if experiment else []
    return {"versions": versions, "aliases": aliases, "train_runs": len(train_runs)}


def airflow_db(world: World, sql: str) -> list[tuple]:
    with sqlite3.connect(world.root / "airflow" / "airflow.db") as db:
        return db.execute(sql).fetchall()


def asset_events(world: World) -> list[tuple]:
    return airflow_db(world, "select a.name, e.extra from asset_event e join asset a on a.id = e.asset_id "
                             "order by e.id")


def test_week1_trains_registers_and_promotes_the_first_champion(world):
    log, decision = retrain(world, WEEK1, "logs-w1")
    day = world.out / WEEK1
    assert (day / "shards" / "manifest.json").is_file()
    assert (day / "model" / "adsrel_model.json").is_file() and (day / "model" / "adapter.safetensors").is_file()
    assert json.loads((day / "evaluation.json").read_text())["complete"] is True
    assert decision["status"] == "promoted", decision["reasons"]
    assert f"gate decision: promoted (candidate version {decision['candidate']['version']}" in log
    assert "gate reason: first model" in log
    assert f"$ {ADSREL} prepare --input {world.root / 'logs-w1'}" in log and "--master 'local[2]'" in log
    assert registry(world) == {"versions": [1], "aliases": {"champion": "1", "challenger": "1"}, "train_runs": 1}
    events = asset_events(world)
    assert [name for name, _ in events] == ["ads_relevance_champion"]
    assert json.loads(events[0][1])["version"] == "1"
    # the promotion queued ads_relevance_batch_score for the scheduler
    assert airflow_db(world, "select target_dag_id from asset_dag_run_queue") == [("ads_relevance_batch_score",)]
    world.done["week1"] = True


def test_week1_again_changes_nothing(world):
    assert world.done.get("week1"), "week 1 did not complete"
    before = registry(world)
    log, decision = retrain(world, WEEK1, "logs-w1")
    assert decision["status"] == "already_champion", decision["reasons"]
    assert "gate decision: already_champion" in log
    assert registry(world) == before  # no second version, no alias moved, no second training run
    assert len(asset_events(world)) == 1


def test_batch_score_writes_scores_with_the_champion_and_monitors_them(world):
    assert world.done.get("week1"), "week 1 did not complete"
    (world.root / "quiet.yaml").write_text("psi_warn: 50\npsi_alert: 100\nrejected_share_warn: 0.9\n"
                                           "rejected_share_alert: 1.0\n")
    conf = {"candidates": str(world.root / "candidates.parquet"), "output_root": str(world.root / "scores"),
            "model": "models:/ads-relevance@champion", "monitoring_policy": str(world.root / "quiet.yaml")}
    log = dags_test(world, "ads_relevance_batch_score", SCORE_DAY, conf)
    monitored = json.loads((world.root / "scores" / SCORE_DAY / "monitor.json").read_text())
    assert monitored["status"] in ("ok", "no_verdict") and monitored["previous"] is None
    assert f"$ {ADSREL} monitor --scored {world.root / 'scores' / SCORE_DAY}" in log
    import pyarrow.dataset as ds

    day = world.root / "scores" / SCORE_DAY
    summary = json.loads((day / "summary.json").read_text())
    parts = sorted((day / "scores").rglob("part-*.parquet"))
    assert parts, "no scored Parquet"
    scores = ds.dataset(parts).to_table()
    assert scores.num_rows == summary["scored"] > 0
    assert {"candidate_id", "score", "model_version", "task"} <= set(scores.column_names)
    assert 0.0 <= min(scores["score"].to_pylist()) and max(scores["score"].to_pylist()) <= 1.0
    assert set(scores["model_version"].to_pylist()) == {"1"}
    rejected = summary["rejected"]
    input_rows = summary["input"]["rows"] if isinstance(summary.get("input"), dict) else summary["input_rows"]
    assert input_rows == CANDIDATES == summary["scored"] + sum(rejected.values())
    for reason, n in rejected.items():
        assert ds.dataset(day / "rejected" / f"reason={reason}").count_rows() == n


def test_a_monitor_alert_fails_its_task_and_the_scores_stay(world):
    assert (world.root / "scores" / SCORE_DAY / "monitor.json").is_file(), "the first scored day did not complete"
    (world.root / "strict.yaml").write_text("min_rows: 1\npsi_warn: 0.0\npsi_alert: 0.0\n")  # any shift alerts
    conf = {"candidates": str(world.root / "candidates.parquet"), "output_root": str(world.root / "scores"),
            "model": "models:/ads-relevance@champion", "monitoring_policy": str(world.root / "strict.yaml")}
    log = dags_test(world, "ads_relevance_batch_score", NEXT_DAY, conf, succeeds=False)
    day = world.root / "scores" / NEXT_DAY
    assert json.loads((day / "summary.json").read_text())["scored"] > 0  # the scores stay written
    monitored = json.loads((day / "monitor.json").read_text())
    assert monitored["status"] == "alert" and monitored["previous"] == str(world.root / "scores" / SCORE_DAY)
    assert "monitor alert: " in log and "AirflowFailException" in log


def test_week2_trains_a_new_model_promoted_routed_or_kept_with_reasons(world):
    assert world.done.get("week1"), "week 1 did not complete"
    before = registry(world)
    log, decision = retrain(world, WEEK2, "logs-w2")
    assert (world.out / WEEK2 / "model" / "adsrel_model.json").is_file()
    after = registry(world)
    status = decision["status"]
    assert status in ("promoted", "routed", "kept") and decision["reasons"]
    # per segment (the default rollout): a routed version (3) when the segments split between 1 and 2
    assert after["versions"] == ([1, 2, 3] if status == "routed" else [1, 2])
    assert after["train_runs"] == before["train_runs"] + 1 and after["aliases"]["challenger"] == "2"
    assert f"gate decision: {status} (candidate version 2, champion before 1" in log
    for reason in decision["reasons"]:
        assert f"gate reason: {reason}" in log
    for segment, version in decision["routing_after"].items():
        assert f"gate segment {segment}: version 1 -> {version}" in log
        assert f"adsrel promote: segment {segment}: " in log
    assert after["aliases"]["champion"] == {"promoted": "2", "routed": "3", "kept": "1"}[status]
    assert len(asset_events(world)) == (1 if status == "kept" else 2)
