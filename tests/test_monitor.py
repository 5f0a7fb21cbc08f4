"""`adsrel monitor`: the judge on hand-made distributions, the thresholds file, and a day end to end
(tiny fitted model registered and evaluated in a temporary MLflow store, its reference, adsrel score's
output): a day like the evaluation data is quiet, a segment whose ads come from a broken feed alerts
alone, a vanished segment alerts on volume, a market no longer a locale alerts on rejections. Then with
the real model (all-MiniLM-L6-v2 fine-tuned on synthetic logs, about two minutes): a day drawn like its
training data is quiet, one segment's ads shuffled against its queries alerts that segment alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from evaluation import drift
from evaluation.promote import promote
from features.errors import UserError
from pipelines.cli import main
from pipelines.monitoring.judge import judge
from pipelines.monitoring.policy import MonitorPolicy, load_monitor_policy
from pipelines.scoring.job import run_score
from tests.fitted_models import fitted_artifact
from tests.shard_data import write_shards
from tests.test_rollout import POLICY, SIGNATURE, TASKS, candidates

ROOT = Path(__file__).resolve().parent.parent
SMALL = MonitorPolicy(min_rows=50)


def dist(rng, a: float, b: float, n: int) -> dict:
    return drift.distribution(rng.beta(a, b, n))


def test_the_judge_flags_a_shifted_segment_a_vanished_one_and_rejections_and_says_why_it_cannot_judge():
    rng = np.random.default_rng(0)
    reference = {t: dist(rng, 2, 5, 5000) for t in ("a", "b", "c", "d")}
    previous = {t: dist(rng, 2, 5, 1000) for t in ("a", "b", "c", "d")}
    today = {"a": dist(rng, 2, 5, 1000), "b": dist(rng, 5, 2, 1000), "c": dist(rng, 2, 5, 20)}  # d vanished
    report = judge(today, reference, previous, {"unmapped": 10}, 3030, SMALL)
    tasks = report["tasks"]
    assert tasks["a"]["status"] == "ok" and tasks["a"]["psi"] < 0.1 and tasks["a"]["volume_change"] < 0.01
    assert tasks["b"]["status"] == "alert" and tasks["b"]["psi"] > 0.25 and tasks["b"]["psi_previous"] > 0.25
    assert tasks["c"]["psi"] is None and "20 rows < min_rows 50: no drift verdict" in tasks["c"]["reasons"]
    assert tasks["c"]["status"] == "alert" and tasks["c"]["volume_change"] > 0.9  # 20 rows where 1000 were
    assert tasks["d"]["rows"] == 0 and tasks["d"]["status"] == "alert"
    assert report["rejected"]["status"] == "ok" and report["status"] == "alert"
    assert any(line.startswith("b: psi ") for line in report["alerts"]) and not any(
        line.startswith("a:") for line in report["alerts"])
    # without a previous day: drift only; too few rows and no reference say so
    alone = judge({"a": today["a"], "c": today["c"]}, {"a": reference["a"]}, None, {"unmapped": 400}, 1420, SMALL)
    assert alone["tasks"]["c"]["status"] == "no_verdict" and alone["tasks"]["a"]["volume_change"] is None
    assert alone["rejected"]["status"] == "alert" and alone["alerts"][0].startswith("rejected share 0.282 > 0.05")
    small_ref = judge({"a": today["a"]}, {"a": dist(rng, 2, 5, 30)}, None, {}, 1000, SMALL)["tasks"]["a"]
    assert small_ref["psi"] is None and small_ref["reasons"] == ["its reference has 30 rows < min_rows 50: no drift "
                                                                 "verdict against it"]
    no_ref = judge({"a": today["a"]}, {"a": None}, None, {}, 1000, SMALL)["tasks"]["a"]
    assert no_ref["status"] == "no_verdict" and no_ref["reasons"] == ["no reference distribution for the version "
                                                                      "that scored it"]


def test_configs_monitoring_yaml_documents_the_defaults_and_bad_values_are_one_line(tmp_path):
    assert load_monitor_policy(ROOT / "configs" / "monitoring.yaml") == MonitorPolicy()
    with pytest.raises(UserError, match="psi_warn <= psi_alert"):
        MonitorPolicy(psi_warn=0.3, psi_alert=0.2)
    (tmp_path / "p.yaml").write_text("min_rows: 2.5\n")
    with pytest.raises(UserError, match="min_rows must be an integer"):
        load_monitor_policy(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text("psi_warm: 0.1\n")
    with pytest.raises(UserError, match="unknown key 'psi_warm'"):
        load_monitor_policy(tmp_path / "p.yaml")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.conftest import temporary_store

    root = tmp_path_factory.mktemp("monitor")
    shards = write_shards(root / "shards", rows_per_task=(1500, 1500, 1500))
    model = fitted_artifact(root / "model", shards, TASKS)
    (root / "small.yaml").write_text("min_rows: 50\n")  # the tiny test split has 300 rows per segment
    with temporary_store(root / "mlflow"):
        promote(str(model), shards, policy=POLICY, bootstrap=10)  # evaluated: the version keeps its reference
        yield {"root": root, "shards": shards}


def day(world, name: str, frame) -> Path:
    path = world["root"] / f"{name}.parquet"
    frame[[*SIGNATURE, "ad_id"]].to_parquet(path, index=False)
    out = world["root"] / f"scored-{name}"
    run_score("models:/ads-relevance@champion", [str(path)], str(out), engine="local")
    return out


def monitor(world, *args: str, capsys) -> tuple[int, dict, list[str]]:
    code = main(["monitor", *args, "--policy", str(world["root"] / "small.yaml")])
    out, err = capsys.readouterr()
    return code, json.loads(out), [line for line in err.splitlines() if line.startswith("adsrel monitor")]


def test_a_day_quiet_then_a_broken_feed_a_vanished_segment_and_a_renamed_market(world, capsys, tmp_path):
    normal = candidates(world["shards"], "test")
    base = day(world, "normal", normal)
    code, report, _ = monitor(world, "--scored", str(base), capsys=capsys)
    assert code == 0 and report["status"] == "ok", report
    assert all(row["psi"] < 0.02 for row in report["tasks"].values())  # the very rows of the reference

    # segment b's ads from a broken feed: one headline for all (this toy data's relevance is in the ad alone,
    # so shuffling its ads against the queries would not move its scores)
    broken = normal.assign(ad_title=np.where(normal.task == "b", "online", normal.ad_title),
                           ad_description=np.where(normal.task == "b", "", normal.ad_description))
    code, report, err = monitor(world, "--scored", str(day(world, "broken", broken)), "--previous", str(base),
                                "--report", str(tmp_path / "r.json"), capsys=capsys)
    assert code == 4 and report["tasks"]["b"]["status"] == "alert", report["tasks"]
    assert report["tasks"]["a"]["status"] == report["tasks"]["c"]["status"] == "ok"
    assert any(line.startswith("adsrel monitor: alert: b: psi") for line in err), err
    assert {k: v for k, v in report.items() if k != "mlflow_run_id"} == json.loads((tmp_path / "r.json").read_text())
    # in MLflow: a run of the monitoring experiment, its metrics at the scored day's step
    import mlflow

    from evaluation.tracking import day_step
    from pipelines.monitoring.tracking import scored_day

    client = mlflow.MlflowClient()
    run = client.get_run(report["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "ads-relevance-monitoring"
    assert run.data.tags["adsrel.status"] == "alert" and run.data.metrics["monitor/b/psi"] > 0.25
    (point,) = client.get_metric_history(run.info.run_id, "monitor/b/psi")
    assert point.step == day_step(scored_day(report["scored_at"])) > 20_000  # days since 1970
    assert datetime.fromtimestamp(point.timestamp / 1000, UTC).date() == scored_day(report["scored_at"])
    assert "monitor/rejected_share" in run.data.metrics and "monitor/a/rows" in run.data.metrics
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/b.png"}  # the alerting segment's distribution against its reference
    assert report["tasks"]["b"]["counts"]["reference"] and report["tasks"]["b"]["counts"]["previous"]

    code, report, _ = monitor(world, "--scored", str(day(world, "vanished", normal[normal.task != "c"])), "--previous",
                              str(base), capsys=capsys)
    assert code == 4 and report["tasks"]["c"]["rows"] == 0 and report["tasks"]["c"]["volume_change"] == 1.0
    assert report["tasks"]["a"]["status"] == "ok"

    renamed = normal.assign(market=np.where(normal.task == "a", "english", normal.market))  # not a locale
    code, report, err = monitor(world, "--scored", str(day(world, "renamed", renamed)), capsys=capsys)
    assert code == 4 and report["rejected"]["status"] == "alert" and report["rejected"]["by_reason"]
    assert any("rejected share" in line for line in err)


def test_an_incomplete_output_is_one_line(tmp_path, capsys):
    assert main(["monitor", "--scored", str(tmp_path)]) == 2
    assert "is not a complete scored output" in capsys.readouterr().err.splitlines()[-1]


# With the real model: all-MiniLM-L6-v2 fine-tuned by MTL-LoRA on synthetic logs, whose relevance is the
# query-ad relation, so an ad shuffled against the queries of its segment is a real drift of its scores.
REAL_TRAIN = ["max_steps=120", "batch_size=16", "max_length=48", "lr=0.002", "eval_every=120", "mlflow=false",
              "register=false"]
CANDIDATE_COLUMNS = ["query", "ad_id", "ad_title", "ad_description", "display_url", "market", "vertical"]


@pytest.fixture(scope="module")
def real_world(tmp_path_factory, spark):
    from features.task_map import load_task_map
    from pipelines.data.prepare import run_prepare
    from pipelines.data.prepare_config import PrepareConfig
    from pipelines.data.synth import synth_logs, write_logs
    from tests.conftest import temporary_store

    root = tmp_path_factory.mktemp("monitor-real")
    write_logs(synth_logs(spark, 16_000, seed=11), str(root / "logs"))
    write_logs(synth_logs(spark, 4_000, seed=12, dirt=0.0), str(root / "day-logs"))
    run_prepare(spark, [str(root / "logs")], str(root / "data"), load_task_map(str(ROOT / "configs" / "tasks.yaml")),
                PrepareConfig(split_ratios=(0.6, 0.1, 0.3)))  # a larger test split: each segment's reference
    sets = [arg for item in REAL_TRAIN for arg in ("--set", item)]
    assert main(["train", "--shards", str(root / "data"), "--output", str(root / "model"), *sets]) == 0
    (root / "policy.yaml").write_text("min_rows: 200\n")
    with temporary_store(root / "mlflow"):
        promote(str(root / "model"), root / "data", policy=POLICY, bootstrap=10)
        yield root


def real_day(root: Path, name: str, frame) -> Path:
    path = root / f"{name}.parquet"
    frame[CANDIDATE_COLUMNS].to_parquet(path, index=False)
    run_score("models:/ads-relevance@champion", [str(path)], str(root / f"scored-{name}"), engine="local")
    return root / f"scored-{name}"


def test_the_real_model_a_day_like_training_is_quiet_and_one_segment_shuffled_alerts_alone(real_world, capsys):
    import pyarrow.dataset as pads

    day_logs = pads.dataset(real_world / "day-logs").to_table().to_pandas()
    normal = real_day(real_world, "normal", day_logs)
    code = main(["monitor", "--scored", str(normal), "--policy", str(real_world / "policy.yaml"), "--no-mlflow"])
    quiet = json.loads(capsys.readouterr().out)
    assert code == 0 and quiet["status"] == "ok", quiet
    assert all(row["psi"] < 0.1 for row in quiet["tasks"].values() if row["psi"] is not None), quiet["tasks"]
    assert quiet["tasks"]["au-health"]["status"] == "no_verdict"  # 26 rows < min_rows: said, not judged
    assert "< min_rows 200: no drift verdict" in quiet["tasks"]["au-health"]["reasons"][0]

    # us-retail's ads shuffled against its queries: mostly unrelated pairs, its scores fall
    retail = ((day_logs.market == "en-US") & (day_logs.vertical == "retail")).to_numpy()
    order = np.random.default_rng(0).permutation(np.flatnonzero(retail))
    shuffled = day_logs.copy()
    for column in ("ad_id", "ad_title", "ad_description", "display_url"):
        shuffled.loc[retail, column] = day_logs[column].to_numpy()[order]
    code = main(["monitor", "--scored", str(real_day(real_world, "shuffled", shuffled)), "--previous", str(normal),
                 "--policy", str(real_world / "policy.yaml"), "--no-mlflow"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    alerting = {task for task, row in report["tasks"].items() if row["status"] == "alert"}
    assert code == 4 and alerting == {"us-retail"}, report["tasks"]
    row = report["tasks"]["us-retail"]
    assert row["psi"] > 0.25 and row["psi_previous"] > 0.25 and row["volume_change"] == 0.0
    assert row["mean_score"] < quiet["tasks"]["us-retail"]["mean_score"] - 0.1
    assert [line for line in err.splitlines() if "alert:" in line] == [
        f"adsrel monitor: alert: us-retail: psi {row['psi']:.3f} (alert)",
        f"adsrel monitor: alert: us-retail: psi_previous {row['psi_previous']:.3f} (alert)",
        "adsrel monitor: alert: 2 alert(s)"], err
