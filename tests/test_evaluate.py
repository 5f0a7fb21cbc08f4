"""`adsrel evaluate` on a tiny trained (and calibrated) model, tiny shards and a temporary MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.evaluate import evaluate_model, log_evaluation, markdown_table
from evaluation.metrics import RANKING_METRICS
from evaluation.plots import write_plots
from models.scoring import Scorer
from pipelines.cli import main
from pipelines.training.config import load_train_config
from pipelines.training.loop import train
from tests.shard_data import write_shards
from tests.tiny_models import tiny_artifact

METRICS = ("roc_auc", "pr_auc", "precision_at_recall_0.5", "precision_at_recall_0.8", "precision_at_recall_0.9",
           "recall_at_precision_0.9", "log_loss", "brier", "ece", "n", "positives")


@pytest.fixture(scope="module")
def store(module_mlflow_store):
    return module_mlflow_store


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Tasks a, b, c; in the test split task c holds positives only."""
    root = write_shards(tmp_path_factory.mktemp("shards"))
    part = root / "shards" / "split=test" / "task=c" / "part-00000.parquet"
    table = pq.read_table(part).to_pandas().assign(label=1)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), part)
    return root


@pytest.fixture(scope="module")
def trained(store, shards, tiny_backbone, tmp_path_factory):
    """mtl_lora trained for a few steps (learning is tests/test_train.py's business) with platt
    calibration, logged and registered as ads-relevance v1."""
    settings = {"backbone": tiny_backbone, "batch_size": 16, "max_steps": 8, "lr": 0.01, "eval_every": 8,
                "head_dropout": 0.0, "max_length": 32, "bucket_factor": 4, "rank": 4, "calibration": "platt"}
    config = load_train_config(None, [f"{k}={v}" for k, v in settings.items()])
    output = tmp_path_factory.mktemp("model")
    return output, train(shards, output, config)


def eval_runs(**tags) -> list:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in {"stage": "evaluate", **tags}.items())
    return mlflow.search_runs(search_all_experiments=True, filter_string=query, output_format="list")


def test_cli_reports_every_task_and_metric_and_logs_to_mlflow(trained, shards, tmp_path, capsys):
    model_dir, _ = trained
    report_path = tmp_path / "out" / "report.json"
    code = main(["evaluate", "--model", str(model_dir), "--shards", str(shards), "--report", str(report_path),
                 "--bootstrap", "100"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.startswith("| task |") and "| a |" in out.out and "| micro |" in out.out
    report = json.loads(report_path.read_text())
    assert report["complete"] is True and report["model"]["method"] == "mtl_lora"
    assert report["model"]["calibrated"] is True  # calibration=platt stored calibrators in the artifact
    assert report["data"]["split"] == "test" and report["data"]["manifest_digest"].startswith("sha256:")
    assert set(report["tasks"]) == {"a", "b", "c"}
    for scope in (*report["tasks"].values(), report["macro"], report["micro"]):
        assert set(METRICS) <= set(scope)
    for task in ("a", "b"):
        m = report["tasks"][task]
        assert 0 <= m["roc_auc_ci_low"] <= m["roc_auc"] <= m["roc_auc_ci_high"]
    c = report["tasks"]["c"]
    assert c["positives"] == c["n"] > 0 and c["roc_auc"] is None and c["log_loss"] is not None
    assert all(c["reasons"][m] == "undefined: only positives" for m in RANKING_METRICS)
    assert report["macro"]["tasks"]["roc_auc"] == 2
    assert "undefined: only positives" in out.out

    (run,) = eval_runs(**{"adsrel.model_digest": report["model"]["digest"]})
    assert run.data.tags["adsrel.manifest_digest"] == report["data"]["manifest_digest"]
    assert run.data.tags["adsrel.split"] == "test" and run.data.tags["adsrel.model_uri"] == str(model_dir)
    metrics = run.data.metrics
    assert metrics["eval/a/roc_auc"] == pytest.approx(report["tasks"]["a"]["roc_auc"])
    assert "eval/macro/roc_auc" in metrics and "eval/micro/pr_auc" in metrics and "eval/c/log_loss" in metrics
    assert "eval/c/roc_auc" not in metrics and metrics["eval/c/n"] == c["n"]
    (dataset,) = run.inputs.dataset_inputs
    assert report["data"]["manifest_digest"][7:].startswith(dataset.dataset.digest)
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "dl")))
    table = json.loads((local / "evaluation_table.json").read_text())
    assert {"task", "roc_auc", "note"} <= set(table["columns"]) and len(table["data"]) == 5
    assert "| c |" in (local / "evaluation_table.md").read_text()
    assert json.loads((local / "evaluation_report.json").read_text())["tasks"]["a"] == report["tasks"]["a"]
    scored = pq.read_table(local / "evaluation_scores.parquet")  # what the per-segment gate pairs
    assert scored.num_rows == report["data"]["rows"] and scored.column_names == ["example_id", "task", "label", "score"]
    ref = json.loads((local / "score_reference.json").read_text())  # what monitoring compares a day with
    assert ref["tasks"]["a"]["rows"] == report["tasks"]["a"]["n"] == sum(ref["tasks"]["a"]["counts"])
    plots = {p.name: p.stat().st_size for p in (local / "plots").glob("*.png")}
    for name in ("roc.png", "pr.png", "calibration.png", "roc_auc_by_task.png", "mtl_mixing_concentration.png",
                 "mtl_lambda_shift.png", "mtl_lambda_similarity.png"):
        assert plots.get(name, 0) > 1000, (name, plots)


def test_registered_model_uri_links_the_training_run(trained, shards, capsys):
    _, result = trained
    assert main(["evaluate", "--model", "models:/ads-relevance/1", "--shards", str(shards), "--split", "valid",
                 "--bootstrap", "0"]) == 0
    (run,) = eval_runs(**{"adsrel.model_uri": "models:/ads-relevance/1"})
    assert run.data.tags["adsrel.evaluated_run_id"] == result.run_id
    assert run.data.tags["adsrel.split"] == "valid"
    assert "eval/a/roc_auc_ci_low" not in run.data.metrics  # --bootstrap 0: no intervals


def test_a_runs_uri_evaluates_the_model_its_training_run_logged(trained, shards, tmp_path):
    model_dir, result = trained
    uri = f"runs:/{result.run_id}/model"
    common = ["--shards", str(shards), "--split", "valid", "--bootstrap", "0"]
    assert main(["evaluate", "--model", uri, *common, "--report", str(tmp_path / "uri.json")]) == 0
    assert main(["evaluate", "--model", str(model_dir), *common, "--no-mlflow",
                 "--report", str(tmp_path / "dir.json")]) == 0
    by_uri, by_dir = (json.loads((tmp_path / name).read_text()) for name in ("uri.json", "dir.json"))
    assert by_uri["tasks"] == by_dir["tasks"] and set(by_uri["tasks"]) == {"a", "b", "c"}
    (run,) = eval_runs(**{"adsrel.model_uri": uri})
    assert run.data.tags["adsrel.evaluated_run_id"] == result.run_id


def test_plots_of_a_plain_lora_model_have_no_mtl_structure(store, shards, tmp_path):
    artifact = tiny_artifact(tmp_path / "lora", ("a", "b", "c"), method="lora")
    report = evaluate_model(artifact, shards, split="valid", bootstrap=20)
    assert report["model"]["calibrated"] is False and "| b |" in markdown_table(report)
    names = {p.name for p in write_plots(tmp_path / "plots", report, model=Scorer.load(artifact).model,
                                         champion_report=report)}
    assert "roc_auc_by_task.png" in names and not any(n.startswith("mtl_") for n in names)
    # the API alone (no scored rows): the AUC bars with the champion's, no curves
    run_id = log_evaluation(report, champion_report=report)
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "plots")}
    assert "plots/roc_auc_by_task.png" in logged and "plots/roc.png" not in logged
    assert "adsrel.evaluated_run_id" not in mlflow.get_run(run_id).data.tags  # a directory: no training run


@pytest.mark.parametrize("args,message", [
    (["--model", "{tmp}/missing"], "model not found"),
    (["--model", "models:/no-such-model/3"], "cannot resolve"),
    (["--split", "holdout"], "unknown split"),
    (["--shards", "{tmp}"], "no manifest.json"),
    (["--bootstrap", "-1"], "--bootstrap must be >= 0"),
])
def test_bad_inputs_exit_2_with_one_line(args, message, trained, shards, tmp_path, capsys):
    model_dir, _ = trained
    base = {"--model": str(model_dir), "--shards": str(shards)}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value.format(tmp=tmp_path)
    argv = ["evaluate", "--no-mlflow"] + [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adsrel evaluate: error:") and message in err[0], err
