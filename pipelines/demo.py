"""`adsrel demo`: the pipeline end to end on built-in defaults, on one machine, in a few minutes.

synth (Spark) -> prepare (Spark) -> train (mtl_lora on all-MiniLM-L6-v2, MLflow) -> evaluate -> promote.
Everything goes under ``workdir``; MLflow uses MLFLOW_TRACKING_URI or ./mlflow.db (see `make mlflow-ui`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"adsrel demo: {message}", file=sys.stderr, flush=True)


def run_demo(workdir: str | Path = "demo-out", rows: int = 20_000, steps: int = 60, master: str = "local[2]") -> int:
    from evaluation.gate import load_policy
    from evaluation.promote import promote
    from features.task_map import load_task_map
    from pipelines.prepare import PrepareConfig, run_prepare
    from pipelines.spark import build_session
    from pipelines.synth import synth_logs, write_logs
    from pipelines.train import train
    from pipelines.train_config import load_train_config

    work = Path(workdir)
    started = time.perf_counter()
    spark = build_session("adsrel-demo", master, {"spark.ui.enabled": "false"})
    log(f"1/4 synth: {rows} raw log rows -> {work / 'raw'}")
    write_logs(synth_logs(spark, rows, 0, 0.03), str(work / "raw"))
    log("2/4 prepare: validate, normalise, label, split into task shards")
    manifest = run_prepare(spark, [str(work / "raw")], str(work / "shards"), load_task_map(ROOT / "configs/tasks.yaml"),
                           PrepareConfig())
    spark.stop()
    log(f"    {manifest['accepted_rows']} accepted, {manifest['quarantined_rows']} quarantined, "
        f"{manifest['examples']['written']} examples in {len(manifest['tasks'])} tasks")
    log(f"3/4 train: mtl_lora, {steps} steps")
    config = load_train_config(ROOT / "configs/train.yaml", [f"max_steps={steps}", f"eval_every={steps}"])
    result = train(work / "shards", work / "model", config)
    log("4/4 evaluate on the test split and promote: the new model against the champion (configs/promotion.yaml)")
    promotion = promote(str(work / "model"), work / "shards", policy=load_policy(ROOT / "configs/promotion.yaml"),
                        report_path=work / "promotion.json")
    log(f"    {promotion.status} version {promotion.candidate.version}: {promotion.decision.reasons[0]}")
    test_auc = {t: row["candidate"] for t, row in promotion.decision.per_task.items()}
    summary = {"model": str(result.output), "mlflow_run_id": result.run_id, "model_version": result.model_version,
               "valid_roc_auc": result.valid, "test_roc_auc": test_auc,
               "promotion": {"status": promotion.status, "champion": promotion.champion_after,
                             "reasons": promotion.decision.reasons, "report": str(work / "promotion.json")},
               "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary, indent=2))
    return 0
