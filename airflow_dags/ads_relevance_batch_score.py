"""Daily batch scoring of candidate (query, ad) pairs with the champion model, and again whenever
ads_relevance_retrain promotes a new champion (the Asset ``ads_relevance_champion``).

The task runs ``adsrel score`` of the project's own environment (adsrel_cli.py: ADSREL_BIN, else
``adsrel`` on PATH; ``--master`` from ADSREL_SPARK_MASTER) with MLFLOW_TRACKING_URI as the worker's
environment sets it. Output: ``<output_root>/<YYYY-MM-DD>/`` of the run's logical date
(an Asset-triggered run has none: its run date), in the layout of ``adsrel score``:
``scores/``, ``rejected/reason=<reason>/`` and ``summary.json`` (written last). A re-run of a date
replaces that date's output.

Then ``adsrel monitor`` judges the date per segment against the champion's reference and the latest
earlier scored date under ``output_root`` (``<date>/monitor.json``, and a run of the MLflow experiment
ads-relevance-monitoring). An alert (exit 4) fails the monitor task without retries, so the
scheduler's failure notification reaches on-call; the scores stay written and the score task green.

This file imports only Airflow, the standard library and its sibling adsrel_cli.py.
"""

from __future__ import annotations

import datetime
import json

from adsrel_cli import PROMOTED_MODEL, REPO, RETRIES, adsrel, log, read_json, run_dir, spark_master
from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task
from airflow.sdk.exceptions import AirflowFailException

with DAG(
    dag_id="ads_relevance_batch_score",
    description="score the day's candidates with models:/ads-relevance@champion (adsrel score)",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=PROMOTED_MODEL),
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,  # runs of one day write one directory
    default_args=RETRIES,
    params={
        "candidates": Param(str(REPO / "data" / "candidates"), type="string", minLength=1,
                            description="candidate pairs: Parquet, JSON Lines or CSV file or directory"),
        "output_root": Param(str(REPO / "runs" / "airflow" / "scores"), type="string", minLength=1,
                             description="scores go to <output_root>/<YYYY-MM-DD>/"),
        "model": Param("models:/ads-relevance@champion", type="string", minLength=1,
                       description="model URI or directory"),
        "monitoring_policy": Param(None, type=["null", "string"],
                                   description="monitoring thresholds YAML (null: configs/monitoring.yaml's defaults)"),
    },
    tags=["adsrel"],
    doc_md=__doc__,
) as dag:

    @task(execution_timeout=datetime.timedelta(hours=6))
    def score(params=None, **context) -> dict:
        """The candidates -> <date>/scores, rejected/, summary.json."""
        out = run_dir(params["output_root"], context)
        adsrel("score", "--model", params["model"], "--candidates", params["candidates"], "--output", str(out),
               *spark_master())
        summary = read_json(out / "summary.json")
        log.info("summary: %s", json.dumps(summary, sort_keys=True))
        return summary

    @task(execution_timeout=datetime.timedelta(hours=1), retries=0)
    def monitor(params=None, **context) -> dict:
        """<date> per segment against the reference and the previous date; an alert fails this task."""
        out = run_dir(params["output_root"], context)
        earlier = sorted(d for d in out.parent.glob("????-??-??")
                         if d.name < out.name and (d / "summary.json").is_file())
        previous = ["--previous", str(earlier[-1])] if earlier else []
        policy = ["--policy", params["monitoring_policy"]] if params["monitoring_policy"] else []
        code = adsrel("monitor", "--scored", str(out), *previous, *policy, "--report", str(out / "monitor.json"),
                      ok=(0, 4), final=(2,))
        report = read_json(out / "monitor.json")
        for task_name, row in sorted(report["tasks"].items()):
            log.info("monitor %s: %s, %s rows, PSI %s", task_name, row["status"], row["rows"], row["psi"])
        if code == 4:  # the scores stay; on-call is told which segment and measure
            raise AirflowFailException("monitor alert: " + "; ".join(report["alerts"]))
        return {"status": report["status"], "alerts": report["alerts"]}

    score() >> monitor()
