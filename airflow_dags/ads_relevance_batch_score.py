"""Daily batch scoring of candidate (query, ad) pairs with the champion model, and again whenever
ads_relevance_retrain promotes a new champion (the Asset ``ads_relevance_champion``).

The task runs ``adsrel score`` of the project's own environment (adsrel_cli.py: ADSREL_BIN, else
``adsrel`` on PATH; ``--master`` from ADSREL_SPARK_MASTER) with MLFLOW_TRACKING_URI as the worker's
environment sets it. Output: ``<output_root>/<YYYY-MM-DD>/`` of the run's logical date
(an Asset-triggered run has none: its run date), in the layout of ``adsrel score``:
``scores/``, ``rejected/reason=<reason>/`` and ``summary.json`` (written last). A re-run of a date
replaces that date's output.

This file imports only Airflow, the standard library and its sibling adsrel_cli.py.
"""

from __future__ import annotations

import datetime
import json

from adsrel_cli import PROMOTED_MODEL, REPO, RETRIES, adsrel, log, read_json, run_dir, spark_master
from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task

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

    score()
