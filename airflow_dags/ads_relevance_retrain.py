"""Weekly retraining of the ads relevance model: prepare -> train -> [distil] -> evaluate -> promote.

Every task runs the adsrel CLI of the project's own environment (adsrel_cli.py: ADSREL_BIN, else
``adsrel`` on PATH; ``--master`` for the Spark stage from ADSREL_SPARK_MASTER). MLflow is reached
through MLFLOW_TRACKING_URI as the worker's environment sets it.

Outputs are keyed by the run's logical date (its run date when it has none):
``<output_root>/<YYYY-MM-DD>/shards`` (adsrel prepare), ``.../model`` (adsrel train; its
checkpoints beside it), ``.../student`` (adsrel train with ``teacher=<date>/model``, when the Param
``distill`` is on: the student, not the teacher, is then the candidate the gate judges),
``.../evaluation.json`` and ``.../promotion.json`` (the gate's decision).
A re-run of a date finds the same data, a finished training run and the same registered version:
it registers nothing and moves no alias. A gate that keeps the champion (promote's exit 3) is a
normal outcome: the task succeeds and logs the decision and its reasons. Only when the champion
moves does the promote task emit the Asset ``ads_relevance_champion``, which triggers the batch
score DAG.

This file imports only Airflow, the standard library and its sibling adsrel_cli.py.
"""

from __future__ import annotations

import datetime

from adsrel_cli import PROMOTED_MODEL, REPO, RETRIES, adsrel, log, read_json, run_dir, spark_master
from airflow.sdk import DAG, AssetAlias, Param, chain, task
from airflow.sdk.exceptions import AirflowSkipException

# Emitted through an alias, so that the Asset gets an event only when promote moves the champion.
PROMOTIONS = AssetAlias("ads_relevance_promotions")


with DAG(
    dag_id="ads_relevance_retrain",
    description="prepare -> train -> evaluate -> promote the ads relevance model (adsrel CLI)",
    schedule="@weekly",
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,  # two promotions never race
    default_args=RETRIES,
    params={
        "logs": Param([str(REPO / "data" / "logs")], type="array", items={"type": "string"}, minItems=1,
                      description="raw query-ad logs: Parquet, JSON Lines or CSV files or directories"),
        "task_map": Param(str(REPO / "configs" / "tasks.yaml"), type="string", minLength=1,
                          description="task map YAML"),
        "train_config": Param(None, type=["null", "string"],
                              description="training config YAML (null: the CLI's defaults)"),
        "train_set": Param([], type="array", items={"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*=.*$"},
                           description='training overrides, "key=value" each (adsrel train --set)'),
        "distill": Param(False, type="boolean",
                         description="train a student from the week's model (the teacher) and promote the student"),
        "student_set": Param(["backbone_layers=3"], type="array",
                             items={"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*=.*$"},
                             description='the student\'s overrides on top of train_set, "key=value" each'),
        "output_root": Param(str(REPO / "runs" / "airflow" / "retrain"), type="string", minLength=1,
                             description="outputs go to <output_root>/<YYYY-MM-DD>/"),
        "promotion_policy": Param(None, type=["null", "string"],
                                  description="gate policy YAML (null: configs/promotion.yaml's defaults)"),
        "rollout": Param(None, type=["null", "string"], enum=[None, "per_segment", "whole"],
                         description="the gate's mode: per_segment (each segment to the version that wins it), "
                         "whole (all or nothing); null: the policy's (per_segment by default)"),
    },
    tags=["adsrel"],
    doc_md=__doc__,
) as dag:

    @task(execution_timeout=datetime.timedelta(hours=3))
    def prepare(params=None, **context) -> None:
        """Spark: raw logs -> <date>/shards (task shards, quarantine, manifest.json)."""
        adsrel("prepare", "--input", *params["logs"], "--task-map", params["task_map"],
               "--output", str(run_dir(params["output_root"], context) / "shards"), *spark_master())

    @task(execution_timeout=datetime.timedelta(hours=12))
    def train(params=None, **context) -> None:
        """<date>/shards -> <date>/model, logged and registered in MLflow (a finished run: nothing more)."""
        out = run_dir(params["output_root"], context)
        config = ["--config", params["train_config"]] if params["train_config"] else []
        overrides = [arg for kv in params["train_set"] for arg in ("--set", kv)]
        # exit 3: the loss diverged; a retry would resume into the same divergence
        adsrel("train", "--shards", str(out / "shards"), *config, *overrides, "--output", str(out / "model"),
               final=(2, 3))

    @task(execution_timeout=datetime.timedelta(hours=12))
    def distill(params=None, **context) -> None:
        """<date>/model teaches <date>/student (skipped unless the Param distill is on)."""
        if not params["distill"]:
            raise AirflowSkipException("distill is off: the week's model is the candidate")
        out = run_dir(params["output_root"], context)
        config = ["--config", params["train_config"]] if params["train_config"] else []
        overrides = [arg for kv in [*params["train_set"], *params["student_set"], f"teacher={out / 'model'}"]
                     for arg in ("--set", kv)]
        adsrel("train", "--shards", str(out / "shards"), *config, *overrides, "--output", str(out / "student"),
               final=(2, 3))

    def candidate(params: dict, context: dict):
        return run_dir(params["output_root"], context) / ("student" if params["distill"] else "model")

    @task(execution_timeout=datetime.timedelta(hours=3), trigger_rule="none_failed")
    def evaluate(params=None, **context) -> None:
        """Per-task metrics of the candidate on the test split, logged to MLflow (promote reuses them)."""
        out = run_dir(params["output_root"], context)
        adsrel("evaluate", "--model", str(candidate(params, context)), "--shards", str(out / "shards"),
               "--report", str(out / "evaluation.json"))

    @task(execution_timeout=datetime.timedelta(hours=3), outlets=[PROMOTIONS])
    def promote(params=None, outlet_events=None, **context) -> dict:
        """The gate: champion moves, whole or some segments (Asset event), stays (exit 3, a normal outcome)
        or already is it. Per segment, the adsrel lines above say from and to which version, and why."""
        out = run_dir(params["output_root"], context)
        policy = ["--policy", params["promotion_policy"]] if params["promotion_policy"] else []
        policy += ["--rollout", params["rollout"]] if params["rollout"] else []
        adsrel("promote", "--candidate", str(candidate(params, context)), "--shards", str(out / "shards"),
               "--report", str(out / "promotion.json"), *policy, ok=(0, 3))
        decision = read_json(out / "promotion.json")
        version = (decision.get("candidate") or {}).get("version")
        log.info("gate decision: %s (candidate version %s, champion before %s, after %s)", decision["status"],
                 version, decision.get("champion_before"), decision.get("champion_after"))
        for reason in decision.get("reasons") or []:
            log.info("gate reason: %s", reason)
        for name, row in sorted((decision.get("per_task") or {}).items()):
            auc = [f"{row[k]:.4f}" if isinstance(row.get(k), float) else "-" for k in ("candidate", "champion")]
            log.info("gate task %s: ROC AUC candidate %s, champion %s, n %s: %s", name, *auc, row.get("n"),
                     row.get("note") or row.get("status"))
        before, after = decision.get("routing_before") or {}, decision.get("routing_after") or {}
        for name in sorted(after):
            log.info("gate segment %s: version %s -> %s", name, before.get(name, "none"), after[name])
        if decision["status"] in ("promoted", "routed"):  # the champion moved: some segment changed version
            champion = decision["champion_after"]
            outlet_events[PROMOTIONS].add(PROMOTED_MODEL, extra={"version": str(champion), "run_dir": str(out)})
            log.info("emitted %s: version %s is the champion", PROMOTED_MODEL.name, champion)
        return {"status": decision["status"], "reasons": decision.get("reasons"), "candidate_version": version}

    chain(prepare(), train(), distill(), evaluate(), promote())
