"""The per-segment rollout on a real temporary MLflow store: the candidate takes the segments it wins,
promote registers a routed champion that every consumer (adsrel score on both engines, the pyfunc,
spark_udf, `mlflow models serve`) scores as each segment's source version does; idempotence, rollback,
a segment the old champion does not know, mixed methods, segments on different backbones decided as a
whole, and shadow scores."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from evaluation.gate import GatePolicy
from evaluation.promote import promote
from evaluation.registry import REGISTERED_MODEL, log_model, resolve_model_dir
from models.routing import load_scorer
from models.scoring import Scorer
from pipelines.cli import main
from pipelines.scoring.job import run_score
from tests.conftest import temporary_store
from tests.fitted_models import fitted_artifact
from tests.shard_data import write_shards
from tests.test_score import served_model

TASKS = ("a", "b", "c")
POLICY = GatePolicy(min_task_rows=20, min_task_positives=5, min_task_negatives=5, bootstrap_resamples=500)
POLICY_YAML = "min_task_rows: 20\nmin_task_positives: 5\nmin_task_negatives: 5\nbootstrap_resamples: 500\n"
SIGNATURE = ["query", "ad_title", "ad_description", "display_url", "market", "vertical"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), rows_per_task=(700, 700, 700))


@pytest.fixture(scope="module")
def models(tmp_path_factory, shards):
    """old: weak on a; new (lora): strong on a, the same fit as old on b, at chance on c."""
    root = tmp_path_factory.mktemp("models")
    return {
        "old": fitted_artifact(root / "old", shards, TASKS, {"a": 0.1}),
        "new": fitted_artifact(root / "new", shards, TASKS, {"c": 0.0}, method="lora"),
        "ab_only": fitted_artifact(root / "ab_only", shards, ("a", "b"), {"a": 0.1, "b": 0.3}),
        # the same noise draws per task as ab_only: b and c alike where their quality is alike
        "good_a": fitted_artifact(root / "good_a", shards, TASKS, {"b": 0.3, "c": 0.0}),
        "good_b": fitted_artifact(root / "good_b", shards, TASKS, {"a": 0.1, "c": 0.0}),
        "other_backbone": fitted_artifact(root / "other", shards, TASKS, {"b": 0.0, "c": 0.0}, backbone_seed=1),
    }


@pytest.fixture(scope="module")
def routed(tmp_path_factory, shards, models):
    """The store after old (v1) then new (v2) were promoted per segment: v3 routes a to 2, b and c to 1."""
    with temporary_store(tmp_path_factory.mktemp("mlflow")) as uri:
        first = promote(str(models["old"]), shards, policy=POLICY, bootstrap=20)
        second = promote(str(models["new"]), shards, policy=POLICY, bootstrap=20)
        yield {"uri": uri, "first": first, "second": second}


def candidates(shards, split: str = "test") -> pd.DataFrame:
    """The split's rows as candidates (market and vertical route them)."""
    from features.shards import read_split

    frame = read_split(shards, split).reset_index(drop=True)
    return frame.assign(ad_id=[f"ad-{i}" for i in range(len(frame))])


def by_source(frame: pd.DataFrame, sources: dict[str, str], models) -> np.ndarray:
    """Each row scored directly by the source version of its task (a -> new, else old)."""
    expected = np.empty(len(frame))
    for name, model in (("new", models["new"]), ("old", models["old"])):
        rows = frame["task"].map(sources).eq(name).to_numpy()
        if rows.any():
            expected[rows] = Scorer.load(model).predict(frame[rows].drop(columns=["task", "task_id"]))
    return expected


def registry() -> dict:
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL}'")
    return {"aliases": {k: str(v) for k, v in client.get_registered_model(REGISTERED_MODEL).aliases.items()},
            "versions": sorted(int(v.version) for v in versions),
            "tags": {str(v.version): dict(v.tags) for v in versions}}


def test_the_candidate_takes_the_segments_it_wins_and_a_routed_version_serves_them(routed):
    first, second = routed["first"], routed["second"]
    assert first.status == "promoted" and first.champion_after == "1"
    assert second.status == "routed" and second.champion_after == "3" and second.routed["registered_now"]
    segments = second.decision.segments
    assert segments["a"]["takes"] and segments["a"]["gain_low"] > 0 and (segments["a"]["from"], segments["a"]["to"]) \
        == ("1", "2")
    assert not segments["b"]["takes"] and segments["b"]["gain"] == pytest.approx(0, abs=1e-9)
    assert not segments["c"]["takes"] and segments["c"]["gain"] < 0 and segments["c"]["to"] == "1"
    assert second.decision.routing == {"a": "2", "b": "1", "c": "1"}
    payload = second.to_dict()
    assert payload["routing_before"] == {"a": "1", "b": "1", "c": "1"} and payload["rollout"] == "per_segment"
    state = registry()
    assert state["aliases"] == {"champion": "3", "challenger": "2"}
    assert state["tags"]["3"]["adsrel.routing"] == "a=2 b=1 c=1"
    assert state["tags"]["3"]["adsrel.gate.decision"] == "routed" == state["tags"]["2"]["adsrel.gate.decision"]
    description = mlflow.MlflowClient().get_model_version(REGISTERED_MODEL, "3").description
    assert "| a | 2 |" in description and "| c | 1 |" in description
    # the champion's test ROC AUC per segment on this data, once per champion version and data, for analysts
    client = mlflow.MlflowClient()
    monitoring = client.get_experiment_by_name("ads-relevance-monitoring")
    (quality,) = client.search_runs([monitoring.experiment_id], filter_string="tags.stage = 'champion_quality'")
    assert quality.data.tags["adsrel.champion_version"] == "1"
    first_auc = first.reports["candidate"]["tasks"]["a"]["roc_auc"]
    assert quality.data.metrics["champion/a/roc_auc"] == pytest.approx(first_auc)


def test_a_routed_champion_scores_each_segment_as_its_source_through_every_consumer(routed, shards, models, tmp_path,
                                                                                      spark):
    frame = candidates(shards)
    expected = by_source(frame, {"a": "new", "b": "old", "c": "old"}, models)
    uri = "models:/ads-relevance@champion"
    raw = frame[[*SIGNATURE, "ad_id"]]
    raw.to_parquet(tmp_path / "candidates.parquet", index=False)
    for engine in ("local", "spark"):
        summary = run_score(uri, [str(tmp_path / "candidates.parquet")], str(tmp_path / engine), engine=engine,
                            **({"spark": spark} if engine == "spark" else {}))
        assert summary["scored"] == len(frame) and summary["model"]["version"] == "3"
        scored = ds.dataset(tmp_path / engine / "scores").to_table().to_pandas().set_index("ad_id").loc[raw.ad_id]
        np.testing.assert_allclose(scored.score, expected, rtol=0, atol=1e-5)
        assert (scored.source_version.to_numpy() == np.where(frame.task == "a", "2", "1")).all()
        assert set(scored.model_version) == {"3"} and scored.shadow_score.isna().all()

    pyfunc = mlflow.pyfunc.load_model(uri).predict(raw)
    np.testing.assert_allclose(pyfunc["score"].astype(float), expected, rtol=0, atol=1e-5)
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    positional = [*SIGNATURE, "task", "ad_id"]
    df = spark.createDataFrame(raw.assign(task=None)[positional].astype(object).where(
        raw.assign(task=None)[positional].notna(), None), schema=", ".join(f"{c} string" for c in positional))
    np.testing.assert_allclose(df.withColumn("score", udf(*positional)).toPandas()["score"], expected, rtol=0,
                               atol=1e-5)
    with served_model(uri, routed["uri"]) as post:
        status, served = post(raw.head(120))
    assert status == 200
    np.testing.assert_allclose([p["score"] for p in served], expected[:120], rtol=0, atol=1e-5)


def test_the_same_candidate_again_moves_nothing_and_moving_the_alias_back_rolls_back(routed, shards, models,
                                                                                     tmp_path):
    before = registry()
    routed_before = {**routed["second"].routed, "registered_now": False}
    again = promote(str(models["new"]), shards, policy=POLICY, bootstrap=20)
    assert again.status == "already_champion" and again.exit_code == 0 and again.champion_after == "3"
    assert again.routed is None and again.decision.reasons[0].startswith("version 2 already serves a in the champion")
    assert again.decision.segments["a"]["reason"] == "the candidate serves it already"
    assert registry() == before  # versions, aliases and every tag as they were
    # the routed champion itself as candidate: already the champion, nothing evaluated or moved
    assert promote("models:/ads-relevance@champion", shards, policy=POLICY, bootstrap=20).status == "already_champion"
    assert registry()["versions"] == before["versions"] and registry()["aliases"]["champion"] == "3"
    mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "challenger", "2")

    frame = candidates(shards)
    frame[[*SIGNATURE, "ad_id"]].to_parquet(tmp_path / "c.parquet", index=False)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(REGISTERED_MODEL, "champion", "1")  # the rollback
    try:
        run_score("models:/ads-relevance@champion", [str(tmp_path / "c.parquet")], str(tmp_path / "out"),
                  engine="local")
        scored = ds.dataset(tmp_path / "out" / "scores").to_table().to_pandas().set_index("ad_id").loc[frame.ad_id]
        assert set(scored.model_version) == {"1"} and set(scored.source_version) == {"1"}
        np.testing.assert_allclose(scored.score, by_source(frame, dict.fromkeys(TASKS, "old"), models), atol=1e-5)
        # promoting the same candidate again after the rollback makes the same routing: version 3, found by digest
        redo = promote(str(models["new"]), shards, policy=POLICY, bootstrap=20)
        assert redo.status == "routed" and redo.routed == {**routed_before, "registered_now": False}
        assert registry()["versions"] == before["versions"] and registry()["aliases"]["champion"] == "3"
    finally:
        client.set_registered_model_alias(REGISTERED_MODEL, "champion", "3")


def test_shadow_scores_beside_the_score_with_a_per_segment_comparison(routed, shards, models, tmp_path, capsys,
                                                                      spark):
    frame = candidates(shards)
    frame[[*SIGNATURE, "ad_id"]].to_parquet(tmp_path / "c.parquet", index=False)
    common = ["score", "--model", "models:/ads-relevance@champion", "--candidates", str(tmp_path / "c.parquet"),
              "--engine", "local"]
    assert main([*common, "--output", str(tmp_path / "plain")]) == 0
    assert main([*common, "--output", str(tmp_path / "shadow"), "--shadow", "models:/ads-relevance/1"]) == 0
    plain, shadowed = (ds.dataset(tmp_path / d / "scores").to_table().to_pandas().set_index("ad_id").loc[frame.ad_id]
                       for d in ("plain", "shadow"))
    np.testing.assert_array_equal(shadowed.score, plain.score)  # the shadow never changes score
    np.testing.assert_allclose(shadowed.shadow_score, by_source(frame, dict.fromkeys(TASKS, "old"), models),
                               atol=1e-5)
    assert set(shadowed.shadow_version) == {"1"}
    summary = json.loads((tmp_path / "shadow" / "summary.json").read_text())["shadow"]
    assert summary["version"] == "1" and summary["shadow_unscored"] == 0
    assert summary["tasks"]["b"]["mean_abs_diff"] == pytest.approx(0, abs=1e-6)
    assert summary["tasks"]["b"]["rank_correlation"] == pytest.approx(1.0)
    assert summary["tasks"]["a"]["mean_abs_diff"] > 0.01 and summary["tasks"]["a"]["rank_correlation"] < 0.99
    assert "shadow 1 on a:" in capsys.readouterr().err
    # the Spark engine ships the shadow model too, and writes the same rows
    on_spark = run_score("models:/ads-relevance@champion", [str(tmp_path / "c.parquet")], str(tmp_path / "spark"),
                         spark=spark, shadow="models:/ads-relevance/1")
    for task, row in summary["tasks"].items():
        assert on_spark["shadow"]["tasks"][task] == pytest.approx(row, abs=1e-5)
    spark_rows = ds.dataset(tmp_path / "spark" / "scores").to_table().to_pandas().set_index("ad_id").loc[frame.ad_id]
    np.testing.assert_allclose(spark_rows.shadow_score, shadowed.shadow_score, atol=1e-5)

    # no row scored (every one rejected): an empty comparison, not a failure
    frame[[*SIGNATURE, "ad_id"]].assign(vertical="zz").to_parquet(tmp_path / "unmapped.parquet", index=False)
    assert main(["score", "--model", "models:/ads-relevance@champion", "--candidates",
                 str(tmp_path / "unmapped.parquet"), "--engine", "local", "--output", str(tmp_path / "none"),
                 "--shadow", "models:/ads-relevance/1"]) == 0
    assert json.loads((tmp_path / "none" / "summary.json").read_text())["shadow"]["tasks"] == {}

    # a shadow that cannot be resolved, or cannot load, fails the run and leaves the output as it was
    before = (tmp_path / "shadow" / "summary.json").read_bytes()
    assert main([*common, "--output", str(tmp_path / "shadow"), "--shadow", "models:/ads-relevance/99"]) == 2
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(models["old"], broken)
    (broken / "adapter.safetensors").write_bytes(b"not safetensors")
    assert main([*common, "--output", str(tmp_path / "shadow"), "--shadow", str(broken)]) == 2
    assert "adapter.safetensors cannot be read" in capsys.readouterr().err.splitlines()[-1]
    assert (tmp_path / "shadow" / "summary.json").read_bytes() == before


def test_a_new_segment_goes_to_the_candidate_and_a_routed_champion_is_challenged_per_segment(mlflow_store, shards,
                                                                                             models):
    version = log_model(models["ab_only"]).version  # promote would refuse it: the data has a task it lacks
    mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "champion", version)
    result = promote(str(models["good_a"]), shards, policy=POLICY, bootstrap=20)
    segments = result.decision.segments
    assert segments["c"]["from"] is None and segments["c"]["takes"] and segments["c"]["rule"] == "unserved"
    assert segments["a"]["rule"] == "gain" and segments["b"]["rule"] == "no_clear_gain"
    assert result.status == "routed" and result.decision.routing == {"a": "2", "b": "1", "c": "2"}

    # the routed champion (3) is challenged segment by segment: b goes to 4, a and c stay with 2, 1 drops out
    again = promote(str(models["good_b"]), shards, policy=POLICY, bootstrap=20)
    assert again.status == "routed" and again.routing_before == {"a": "2", "b": "1", "c": "2"}
    assert again.decision.routing == {"a": "2", "b": "4", "c": "2"} and again.champion_after == "5"
    routed = load_scorer(resolve_model_dir(f"models:/{REGISTERED_MODEL}/5"))
    assert routed.routing == {"a": "2", "b": "4", "c": "2"} and sorted(routed.sources) == ["2", "4"]
    frame = candidates(shards)
    expected = np.empty(len(frame))
    for version, model in (("2", models["good_a"]), ("4", models["good_b"])):
        rows = frame["task"].map(routed.routing).eq(version).to_numpy()
        expected[rows] = Scorer.load(model).predict(frame[rows].drop(columns=["task", "task_id"]))
    np.testing.assert_allclose(routed.predict(frame.drop(columns=["task", "task_id"])), expected, atol=1e-5)


def test_segments_that_cannot_share_a_backbone_are_decided_as_a_whole(mlflow_store, shards, models, capsys):
    # a student of fewer blocks, or another backbone: it wins segment a, but no routed model can hold both
    (mlflow_store / "policy.yaml").write_text(POLICY_YAML)
    promote(str(models["old"]), shards, policy=POLICY, bootstrap=20)
    code = main(["promote", "--candidate", str(models["other_backbone"]), "--shards", str(shards), "--policy",
                 str(mlflow_store / "policy.yaml"), "--bootstrap", "20"])
    out, err = capsys.readouterr()
    decision = json.loads(out)
    assert code == 3 and decision["status"] == "kept", err  # the whole rule: it loses b and c
    assert decision["reasons"][0].startswith("the segments cannot be split between versions, decided as a whole: "
                                             "versions 1 and 2 have different backbones")
    assert decision["per_task"]["b"]["status"] == "drop" and decision["routing_after"] is None
    assert registry()["aliases"] == {"champion": "1", "challenger": "2"} and registry()["versions"] == [1, 2]


def test_the_whole_rollout_keeps_a_candidate_that_loses_one_segment(mlflow_store, shards, models):
    whole = GatePolicy(rollout="whole", min_task_rows=20, min_task_positives=5, min_task_negatives=5)
    promote(str(models["old"]), shards, policy=whole, bootstrap=20)
    result = promote(str(models["new"]), shards, policy=whole, bootstrap=20)
    assert result.status == "kept" and result.decision.per_task["c"]["status"] == "drop"
    assert registry()["aliases"]["champion"] == "1"
