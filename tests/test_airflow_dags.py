"""The Airflow DAGs of airflow_dags/, parsed by Airflow 3 in .venv-airflow (`make airflow`): no import
errors, the tasks, dependencies, schedules, retries, timeouts and Params of docs/architecture.md and
docs/airflow.md, parse time, imports (Airflow, the standard library and the DAG folder's own
adsrel_cli.py only), and one run of the retrain DAG with a fake adsrel CLI whose gate keeps the
champion (exit 3): the run succeeds, the decision and reasons are in the task log, no Asset event; a
user error (exit 2) fails the run without a retry."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "airflow_dags"
AIRFLOW_PY = ROOT / ".venv-airflow" / "bin" / "python"
AIRFLOW = ROOT / ".venv-airflow" / "bin" / "airflow"


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    if not AIRFLOW.exists():
        pytest.fail(f"{AIRFLOW} is missing: run `make airflow` (make test builds it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ADSREL_", "MLFLOW_"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(DAGS), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               **extra)
    return env


# Run by .venv-airflow's python: what the DagBag holds, as JSON on stdout.
INSPECT = textwrap.dedent("""
    import ast, copy, json, sys, time
    t0 = time.perf_counter()
    from pathlib import Path
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.sdk import Asset, AssetAlias, AssetOrTimeSchedule, CronTriggerTimetable
    from airflow.sdk.exceptions import ParamValidationError
    airflow_import_s = time.perf_counter() - t0
    # as the DAG processor and the workers load a bundle: its folder on sys.path (adsrel_cli.py)
    bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]))
    out = {"import_errors": bag.import_errors, "airflow_import_s": airflow_import_s,
           "parse_s": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats}, "dags": {},
           "heavy_modules": sorted(m for m in ("torch", "pyspark", "mlflow", "pandas", "numpy", "pyarrow",
                                               "transformers", "features", "models", "pipelines", "evaluation")
                                   if m in sys.modules)}
    for dag_id, dag in bag.dags.items():
        tt = dag.timetable
        schedule = {"type": type(tt).__name__}
        if isinstance(tt, AssetOrTimeSchedule):
            cond = tt.asset_condition
            assets = [cond.name] if isinstance(cond, Asset) else sorted(a.name for _, a in cond.iter_assets())
            schedule.update(cron=tt.timetable.expression, assets=assets)
        elif isinstance(tt, CronTriggerTimetable):
            schedule.update(cron=tt.expression)
        dag.params.validate()  # the defaults are valid
        checked = {}
        for name, value in [("logs", "not-a-list"), ("logs", ["/a", "/b"]), ("train_set", ["no equals sign"]),
                            ("train_set", ["max_steps=20"]), ("train_config", "/c.yaml"), ("candidates", None),
                            ("candidates", "/c.parquet"), ("rollout", "whole"), ("rollout", "by_market")]:
            if name in dag.params:
                params = copy.deepcopy(dag.params)
                try:
                    params[name] = value
                    params.validate()
                    checked[f"{name}={value}"] = "accepted"
                except ParamValidationError:
                    checked[f"{name}={value}"] = "rejected"
        out["dags"][dag_id] = {
            "fileloc": dag.fileloc, "schedule": schedule, "max_active_runs": dag.max_active_runs,
            "catchup": dag.catchup, "params": dag.params.dump(), "checked_params": checked,
            "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "retries": t.retries,
                                  "retry_delay_s": t.retry_delay.total_seconds(),
                                  "backoff": t.retry_exponential_backoff,
                                  "timeout_s": t.execution_timeout and t.execution_timeout.total_seconds(),
                                  "outlets": [[type(o).__name__, o.name] for o in t.outlets]}
                      for t in dag.tasks},
        }
    imports = {}
    for path in sorted(__import__("pathlib").Path(sys.argv[1]).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
        siblings = {p.stem for p in path.parent.glob("*.py")}
        imports[path.name] = sorted(n for n in names if n != "airflow" and n not in sys.stdlib_module_names
                                    and n not in siblings)
    out["non_stdlib_imports"] = imports
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    done = subprocess.run([str(AIRFLOW_PY), "-c", INSPECT, str(DAGS)], env=airflow_env(home), cwd=home,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dags_parse_without_import_errors_and_quickly(bag):
    assert bag["import_errors"] == {}
    assert set(bag["dags"]) == {"ads_relevance_retrain", "ads_relevance_batch_score"}
    assert set(bag["parse_s"]) == {"ads_relevance_retrain.py", "ads_relevance_batch_score.py"}
    for name, seconds in bag["parse_s"].items():
        assert seconds < 0.5, f"{name} took {seconds:.3f} s to parse"


def test_dag_files_import_only_airflow_and_the_standard_library(bag):
    assert bag["non_stdlib_imports"] == {"ads_relevance_retrain.py": [], "ads_relevance_batch_score.py": [],
                                         "adsrel_cli.py": []}
    assert bag["heavy_modules"] == []  # nothing of the ML stack (or the project) was imported at parse time


def test_retrain_dag_tasks_schedule_retries_timeouts(bag):
    dag = bag["dags"]["ads_relevance_retrain"]
    assert dag["schedule"] == {"type": "CronTriggerTimetable", "cron": "0 0 * * 0"}  # @weekly
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    tasks = dag["tasks"]
    assert {t: v["upstream"] for t, v in tasks.items()} == {
        "prepare": [], "train": ["prepare"], "distill": ["train"], "evaluate": ["distill"], "promote": ["evaluate"]}
    for task_id, task in tasks.items():
        assert task["retries"] >= 1 and task["retry_delay_s"] > 0 and task["backoff"] > 1, task_id
        assert task["timeout_s"] and task["timeout_s"] <= 24 * 3600, task_id
    assert tasks["promote"]["outlets"] == [["AssetAlias", "ads_relevance_promotions"]]
    assert all(not t["outlets"] for k, t in tasks.items() if k != "promote")


def test_retrain_dag_params(bag):
    dag = bag["dags"]["ads_relevance_retrain"]
    params = dag["params"]
    assert set(params) == {"logs", "task_map", "train_config", "train_set", "output_root", "promotion_policy",
                           "rollout", "distill", "student_set"}
    assert params["distill"] is False and params["student_set"] == ["backbone_layers=3"]  # off by default
    assert isinstance(params["logs"], list) and params["train_set"] == []
    assert params["train_config"] is None and params["promotion_policy"] is None and params["rollout"] is None
    assert Path(params["task_map"]) == ROOT / "configs" / "tasks.yaml"
    assert dag["checked_params"] == {
        "logs=not-a-list": "rejected", "logs=['/a', '/b']": "accepted", "train_set=['no equals sign']": "rejected",
        "train_set=['max_steps=20']": "accepted", "train_config=/c.yaml": "accepted", "rollout=whole": "accepted",
        "rollout=by_market": "rejected"}


def test_batch_score_dag_is_daily_and_on_the_promoted_model(bag):
    dag = bag["dags"]["ads_relevance_batch_score"]
    assert dag["schedule"] == {"type": "AssetOrTimeSchedule", "cron": "0 0 * * *",
                               "assets": ["ads_relevance_champion"]}
    assert dag["max_active_runs"] == 1
    assert set(dag["params"]) == {"candidates", "output_root", "model", "monitoring_policy"}
    assert dag["params"]["model"] == "models:/ads-relevance@champion" and dag["params"]["monitoring_policy"] is None
    assert dag["checked_params"] == {"candidates=None": "rejected", "candidates=/c.parquet": "accepted"}
    tasks = dag["tasks"]
    assert {t: v["upstream"] for t, v in tasks.items()} == {"score": [], "monitor": ["score"]}
    assert tasks["score"]["retries"] >= 1 and tasks["score"]["timeout_s"] and tasks["score"]["backoff"] > 1
    assert tasks["monitor"]["retries"] == 0 and tasks["monitor"]["timeout_s"]  # an alert is not retried


# A stand-in for adsrel: records its argv, writes what the real one writes to --report (and prints it
# on stdout, which the DAG must not need), exits as told.
FAKE_ADSREL = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
echo "fake adsrel $1: progress on stderr" >&2
report=""; previous=""
for arg in "$@"; do [ "$previous" = "--report" ] && report="$arg"; previous="$arg"; done
case "$1" in
  train) if [ -n "$FAKE_TRAIN_EXIT" ]; then
           echo "adsrel train: error: no such file: bad.yaml" >&2; exit "$FAKE_TRAIN_EXIT"
         fi
         echo '{"output": "x", "steps": 1}' ;;
  promote) mkdir -p "$(dirname "$report")"
           echo '{"status": "kept", "reasons": ["macro ROC AUC 0.61 < champion 0.64 + 0.0"],
"candidate": {"version": "2"}, "champion_before": "1", "champion_after": "1",
"per_task": {"us-retail": {"candidate": 0.6, "champion": 0.7, "n": 120, "status": "drop"}}}' > "$report"
           echo '{"status": "not what the report says"}'; exit 3 ;;
esac
exit 0
"""


@pytest.fixture(scope="module")
def fake_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-fake")
    fake = home / "adsrel"
    fake.write_text(FAKE_ADSREL)
    fake.chmod(0o755)
    done = subprocess.run([str(AIRFLOW), "db", "migrate"], env=airflow_env(home), cwd=home, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return home


def dags_test(home: Path, date: str, conf: dict, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(AIRFLOW), "dags", "test", "ads_relevance_retrain", date, "-c", json.dumps(conf)],
                          env=airflow_env(home, ADSREL_BIN=str(home / "adsrel"), FAKE_LOG=str(home / "calls"),
                                          **env),
                          cwd=home, capture_output=True, text=True, timeout=300)


def test_retrain_kept_is_a_successful_run_with_the_reasons_in_the_log(fake_home):
    out = fake_home / "out"
    conf = {"logs": ["/logs/a", "/logs/b"], "task_map": "/maps/tasks.yaml", "train_config": "/cfg/train.yaml",
            "train_set": ["max_steps=5", "lr=0.001"], "output_root": str(out), "promotion_policy": "/cfg/p.yaml"}
    done = dags_test(fake_home, "2026-03-01", conf, ADSREL_SPARK_MASTER="spark://head:7077")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    day = out / "2026-03-01"
    assert (fake_home / "calls").read_text().splitlines() == [
        f"prepare --input /logs/a /logs/b --task-map /maps/tasks.yaml --output {day}/shards --master spark://head:7077",
        f"train --shards {day}/shards --config /cfg/train.yaml --set max_steps=5 --set lr=0.001 --output {day}/model",
        f"evaluate --model {day}/model --shards {day}/shards --report {day}/evaluation.json",
        f"promote --candidate {day}/model --shards {day}/shards --report {day}/promotion.json --policy /cfg/p.yaml",
    ]
    assert "fake adsrel promote: progress on stderr" in log  # the CLI's stderr is in the task log
    assert "gate decision: kept (candidate version 2, champion before 1, after 1)" in log
    assert "gate reason: macro ROC AUC 0.61 < champion 0.64 + 0.0" in log
    assert "gate task us-retail: ROC AUC candidate 0.6000, champion 0.7000, n 120: drop" in log
    assert "distill is off" in log  # the distill task skipped, evaluate and promote ran on the week's model
    with sqlite3.connect(fake_home / "airflow.db") as db:  # kept: the promoted-model Asset has no event
        assert db.execute("select count(*) from asset_event").fetchone() == (0,)


def test_retrain_with_distill_trains_a_student_from_the_week_model_and_gates_the_student(fake_home):
    (fake_home / "calls").unlink(missing_ok=True)
    out = fake_home / "out"
    conf = {"logs": ["/logs/a"], "train_set": ["max_steps=5"], "output_root": str(out), "distill": True,
            "student_set": ["backbone_layers=2", "seed=1"]}
    done = dags_test(fake_home, "2026-03-15", conf)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    day = out / "2026-03-15"
    assert (fake_home / "calls").read_text().splitlines()[1:] == [
        f"train --shards {day}/shards --set max_steps=5 --output {day}/model",
        f"train --shards {day}/shards --set max_steps=5 --set backbone_layers=2 --set seed=1 --set "
        f"teacher={day}/model --output {day}/student",
        f"evaluate --model {day}/student --shards {day}/shards --report {day}/evaluation.json",
        f"promote --candidate {day}/student --shards {day}/shards --report {day}/promotion.json",
    ]


def test_retrain_user_error_fails_without_retries(fake_home):
    (fake_home / "calls").unlink(missing_ok=True)
    conf = {"logs": ["/logs/a"], "output_root": str(fake_home / "out")}
    done = dags_test(fake_home, "2026-03-08", conf, FAKE_TRAIN_EXIT="2")
    log = done.stdout + done.stderr
    assert done.returncode != 0, log[-4000:]
    assert "adsrel train exited 2 (not retried): adsrel train: error: no such file: bad.yaml" in log
    verbs = [line.split()[0] for line in (fake_home / "calls").read_text().splitlines()]
    assert verbs == ["prepare", "train"]  # one try of train, nothing after it
