"""`adsrel demo`'s code on tiny sizes (its own process, as `make demo` runs it): every stage runs, the
terminal shows stages and the table while Spark's output goes to the log, and a second run reuses
every stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parent.parent
PERMISSIVE = "macro_floor: 0.0\nmin_task_rows: 1\nmin_task_positives: 1\nmin_task_negatives: 1\n"


def run_tiny_demo(work: Path, policy: Path, store: Path) -> subprocess.CompletedProcess:
    code = (
        "from pathlib import Path\n"
        "from pipelines.demo import DemoConfig, run_demo\n"
        f"raise SystemExit(run_demo(DemoConfig(workdir=Path({str(work)!r}), rows=3000, candidates=150, steps=4, "
        f"batch_size=8, max_length=32, valid_rows=40, bootstrap=20, policy=Path({str(policy)!r}))))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db", "PYSPARK_PYTHON": sys.executable}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def test_the_demo_runs_every_stage_and_a_second_run_reuses_them(tmp_path):
    work, policy = tmp_path / "demo", tmp_path / "policy.yaml"
    policy.write_text(PERMISSIVE)
    first = run_tiny_demo(work, policy, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:] + (work / "demo.log").read_text()[-3000:]
    for stage in range(1, 8):
        assert f"[{stage}/7]" in first.stderr, first.stderr
    assert "WARN" not in first.stderr and "Traceback" not in first.stderr  # Spark's noise is in the log
    assert "log4j" in (work / "demo.log").read_text()
    table = first.stdout
    assert "| task | test rows | mtl_lora ROC AUC [95% CI] | lora ROC AUC [95% CI] | gate |" in table
    assert "| us-retail |" in table and "| macro |" in table and "champion: " in table
    assert "make mlflow-ui" in table and str(work / "demo.log") in table
    assert "/runs?workflowType=machine_learning" in table  # straight to the runs, not MLflow 3's GenAI overview
    decisions = {m: json.loads((work / f"promotion-{m}.json").read_text()) for m in ("mtl_lora", "lora")}
    assert decisions["mtl_lora"]["status"] == "promoted"  # the first model meets the (permissive) floors
    assert decisions["lora"]["status"] in ("promoted", "routed", "kept") and decisions["lora"]["champion_before"] == "1"
    assert set(decisions["lora"]["segments"]) == set(decisions["lora"]["routing_after"])  # per segment, the default
    assert "scored by: version " in table
    summary = json.loads((work / "scores" / "summary.json").read_text())
    assert summary["input_rows"] == 150 == summary["scored"] + summary["rejected_rows"]
    assert ds.dataset(work / "scores" / "scores").count_rows() == summary["scored"]
    assert summary["model"]["version"] == decisions["lora"]["champion_after"]
    assert not (work / "models" / "mtl_lora" / "checkpoints").exists()
    import mlflow  # the evaluations of the model directories, reused by the gate, say which version they are of

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ads-relevance").experiment_id], "tags.stage = 'evaluate'")
    assert {(r.info.run_name, r.data.tags["adsrel.version"]) for r in runs} == {
        ("eval-mtl_lora-v1-test", "1"), ("eval-lora-v2-test", "2")}

    second = run_tiny_demo(work, policy, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    reused = [line for line in second.stderr.splitlines() if "unchanged since the last run" in line]
    assert len(reused) == 6, second.stderr  # synth, prepare, both evaluations, the gate, the scores
    assert second.stderr.count("nothing left to train") == 2  # both trainings finished before
    assert second.stdout.split("champion: ")[1].splitlines()[0] == table.split("champion: ")[1].splitlines()[0]
