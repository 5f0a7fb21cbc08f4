"""`adsrel promote` on a real temporary sqlite MLflow store, tiny fitted artifacts and tiny shards:
first model, better, worse, idempotent re-runs, failed evaluations, bad inputs."""

from __future__ import annotations

import json
import shutil

import mlflow
import pytest

from evaluation.gate import GatePolicy
from evaluation.promote import EvaluationFailed, promote
from evaluation.registry import INPUT_EXAMPLE, REGISTERED_MODEL
from evaluation.tracking import MODEL_DIGEST_TAG as DIGEST_TAG
from features.shards import manifest_digest
from models.artifact import model_digest
from pipelines.cli import main
from tests.fitted_models import fitted_artifact
from tests.shard_data import write_shards

TASKS = ("a", "b", "c")
# the tiny test split has 50-80 rows per task
# the whole rollout here (one verdict for the model); the per-segment one: tests/test_rollout.py
POLICY = GatePolicy(rollout="whole", min_task_rows=20, min_task_positives=5, min_task_negatives=5)
POLICY_YAML = "rollout: whole\nmin_task_rows: 20\nmin_task_positives: 5\nmin_task_negatives: 5\n"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), rows_per_task=(400, 300, 250))


@pytest.fixture(scope="module")
def models(tmp_path_factory, shards):
    """Test macro ROC AUC: fair ~0.63, good ~0.76, weak_c = good but task c at chance (~0.46)."""
    root = tmp_path_factory.mktemp("models")
    return {
        "fair": fitted_artifact(root / "fair", shards, TASKS, 0.4),
        "good": fitted_artifact(root / "good", shards, TASKS, 1.0),
        "weak_c": fitted_artifact(root / "weak_c", shards, TASKS, {"c": 0.0}),
        "ab_only": fitted_artifact(root / "ab_only", shards, ("a", "b"), 0.4),  # knows tasks a and b only
    }


@pytest.fixture
def store(mlflow_store):
    (mlflow_store / "policy.yaml").write_text(POLICY_YAML)
    return mlflow_store


def cli(*args: str, capsys) -> tuple[int, dict | None, str]:
    code = main(["promote", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def registry_state() -> dict:
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL}'")
    aliases = client.get_registered_model(REGISTERED_MODEL).aliases if versions else {}
    runs = client.search_runs([client.get_experiment_by_name("ads-relevance").experiment_id])
    return {"versions": sorted(int(v.version) for v in versions), "aliases": {k: str(v) for k, v in aliases.items()},
            "runs": sorted(r.info.run_id for r in runs),
            "tags": {str(v.version): {k: t for k, t in (v.tags or {}).items() if k.startswith("adsrel.")}
                     for v in versions}}


def test_first_better_worse_and_idempotent_reruns(store, shards, models, capsys):
    policy = ["--policy", str(store / "policy.yaml"), "--bootstrap", "20"]
    # first model ever: registered, champion when the floors hold
    code, out, err = cli("--candidate", str(models["fair"]), "--shards", str(shards),
                         "--report", str(store / "r1.json"), *policy, capsys=capsys)
    assert code == 0, err
    assert out["status"] == "promoted" and out["champion_before"] is None and out["champion_after"] == "1"
    assert out["reasons"][0].startswith("first model") and out["candidate"]["registered_now"]
    assert json.loads((store / "r1.json").read_text()) == out
    assert out["data"]["manifest_digest"] == manifest_digest(shards)
    state = registry_state()
    assert state["aliases"] == {"champion": "1", "challenger": "1"}
    assert state["tags"]["1"][DIGEST_TAG] == model_digest(models["fair"])
    assert state["tags"]["1"]["adsrel.gate.decision"] == "promoted"
    assert state["tags"]["1"]["adsrel.gate.champion_version"] == "none"

    # a better model is promoted over it
    code, out, err = cli("--candidate", str(models["good"]), "--shards", str(shards), *policy, capsys=capsys)
    assert code == 0, err
    assert out["status"] == "promoted" and out["champion_before"] == "1" and out["champion_after"] == "2"
    assert out["macro"]["delta"] > 0.05 and out["evaluation_runs"]["champion"]
    assert registry_state()["aliases"] == {"champion": "2", "challenger": "2"}

    # as good on a and b, at chance on c: kept, with the reasons (macro first, then the task), exit 3
    code, out, err = cli("--candidate", str(models["weak_c"]), "--shards", str(shards), *policy, capsys=capsys)
    assert code == 3, err
    assert out["status"] == "kept" and out["champion_after"] == "2"
    assert [out["per_task"][t]["status"] for t in TASKS] == ["ok", "ok", "drop"]
    assert out["reasons"][0].startswith("macro ROC AUC") and out["reasons"][1].startswith("c: ROC AUC")
    kept = registry_state()
    assert kept["aliases"] == {"champion": "2", "challenger": "3"}
    assert kept["tags"]["3"]["adsrel.gate.decision"] == "kept"
    assert kept["tags"]["3"]["adsrel.gate.reason"] == out["reasons"][0]
    assert kept["tags"]["3"]["adsrel.gate.champion_version"] == "2"
    decision_file = f"runs:/{out['evaluation_runs']['candidate']}/promotion/decision-v3-vs-2.json"
    assert mlflow.artifacts.load_dict(decision_file)["reasons"] == out["reasons"]
    # for analysts: the evaluation run says what it evaluated, the version's description what it is and why
    evaluation = mlflow.get_run(out["evaluation_runs"]["candidate"])
    assert evaluation.info.run_name == "eval-mtl_lora-v3-test" and evaluation.data.tags["adsrel.version"] == "3"
    description = mlflow.MlflowClient().get_model_version(REGISTERED_MODEL, "3").description
    assert description.startswith("mtl_lora on ") and ", 3 segments: a, b, c." in description
    assert f"Test macro ROC AUC {out['macro']['candidate']:.4f} [" in description and "(95% bootstrap) on test of " \
        in description
    assert f"Gate: **kept** against champion 2: {out['reasons'][0]}" in description
    # every segment across the versions, the champion marked, in the candidate's evaluation run
    history = mlflow.artifacts.load_text(f"runs:/{evaluation.info.run_id}/promotion/segments_by_version.md")
    header, _, data, *rows = history.splitlines()
    assert header == "| segment | v1 | v2 (champion) | v3 |" and data.startswith("| data | test of `")
    by_task = {row.split(" | ")[0].strip("| "): row for row in rows}
    assert set(by_task) == {"a", "b", "c", "macro"}
    assert f"{out['per_task']['c']['candidate']:.4f}" in by_task["c"].split(" | ")[3]
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(evaluation.info.run_id, "promotion")} >= {
        "promotion/segments_by_version.md", "promotion/segments_by_version.png"}

    # the same candidate and data again: no new version, no new run, same aliases, same decision
    for candidate in (str(models["weak_c"]), "models:/ads-relevance/3", "models:/ads-relevance@challenger"):
        again, out_again, _ = cli("--candidate", candidate, "--shards", str(shards), *policy, capsys=capsys)
        assert again == 3 and out_again["candidate"].pop("registered_now") is False
        assert out_again == {**out, "candidate": {k: v for k, v in out["candidate"].items() if k != "registered_now"}}
        assert registry_state() == kept

    # the champion again: already champion, exit 0, nothing moves
    code, out, _ = cli("--candidate", str(models["good"]), "--shards", str(shards), *policy, capsys=capsys)
    assert code == 0 and out["status"] == "already_champion"
    state = registry_state()
    assert state["aliases"] == {"champion": "2", "challenger": "2"}
    assert state["versions"] == [1, 2, 3] and state["runs"] == kept["runs"]
    assert state["tags"]["2"]["adsrel.gate.decision"] == "promoted"

    # the old champion, worse on average, is kept (its earlier evaluation is reused: no new run)
    code, out, _ = cli("--candidate", "models:/ads-relevance/1", "--shards", str(shards), *policy, capsys=capsys)
    assert code == 3 and out["status"] == "kept" and out["macro"]["delta"] < 0
    assert out["reasons"][0].startswith("macro ROC AUC")
    state = registry_state()
    assert state["aliases"] == {"champion": "2", "challenger": "1"} and state["runs"] == kept["runs"]
    assert state["tags"]["1"]["adsrel.gate.decision"] == "kept"


def test_runs_uri_of_a_registered_model_is_not_registered_twice(store, shards, models):
    from evaluation.registry import log_model

    ref = log_model(models["fair"], input_example=INPUT_EXAMPLE.assign(task="a"))  # what `adsrel train` does
    for uri in (f"runs:/{ref.run_id}/model", ref.model_uri):
        result = promote(uri, shards, policy=POLICY, bootstrap=10)
        assert result.candidate.version == ref.version == "1" and not result.candidate.registered_now
    assert result.status == "already_champion" and registry_state()["versions"] == [1]


def test_a_task_added_to_the_data(store, shards, models):
    # a model without task c is never promoted on data with c ...
    result = promote(str(models["ab_only"]), shards, policy=POLICY, bootstrap=10)
    assert result.status == "kept" and result.decision.reasons == [
        "candidate evaluation lacks task(s) of the data: c"]
    assert result.reports["candidate"]["data"]["tasks_not_evaluated"] == ["c"]
    # ... but as the champion it is compared on a and b, and c is judged by the floors only
    mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "champion", result.candidate.version)
    result = promote(str(models["good"]), shards, policy=POLICY, bootstrap=10)
    assert result.status == "promoted", result.decision.reasons
    assert result.decision.macro["common_tasks"] == ["a", "b"] and "new task" in result.decision.per_task["c"]["note"]


def test_failed_evaluation_never_moves_an_alias(store, shards, models):
    from evaluation.registry import log_model

    log_model(models["fair"], input_example=INPUT_EXAMPLE.assign(task="a"))
    client = mlflow.MlflowClient()
    for alias in ("champion", "challenger"):
        client.set_registered_model_alias(REGISTERED_MODEL, alias, "1")
    before = registry_state()

    def broken(model_dir, shards_dir, split):
        raise RuntimeError("out of memory\nsecond line")

    with pytest.raises(EvaluationFailed, match="candidate .version 2. failed: RuntimeError: out of memory$"):
        promote(str(models["good"]), shards, policy=POLICY, evaluate=broken)

    def incomplete(model_dir, shards_dir, split):
        return {"tasks": {"a": {"roc_auc": 0.99, "n": 80, "positives": 30}}, "complete": False}

    with pytest.raises(EvaluationFailed, match="incomplete"):
        promote(str(models["good"]), shards, policy=POLICY, evaluate=incomplete)
    after = registry_state()
    assert after["aliases"] == before["aliases"] == {"champion": "1", "challenger": "1"}
    assert "adsrel.gate.decision" not in after["tags"]["2"]  # registered, but never judged


def test_an_analysts_record_that_fails_after_the_decision_is_a_warning(store, shards, models, monkeypatch, capsys):
    import evaluation.segment_history as history

    def unplottable(client, experiment_id):
        raise OSError("artifact store unreachable")

    monkeypatch.setattr(history, "version_scores", unplottable)  # our own step, after the aliases moved
    result = promote(str(models["good"]), shards, policy=POLICY)
    assert result.status == "promoted" and registry_state()["aliases"] == {"champion": "1", "challenger": "1"}
    assert "warning: could not log the segment history: artifact store unreachable" in capsys.readouterr().err


def test_a_champion_moved_by_another_promotion_meanwhile_is_not_overruled(store, shards, models):
    from evaluation.promote import ChampionMoved, default_evaluator
    from evaluation.registry import log_model

    for name in ("fair", "weak_c"):
        log_model(models[name], input_example=INPUT_EXAMPLE.assign(task="a"))
    client = mlflow.MlflowClient()
    for alias in ("champion", "challenger"):
        client.set_registered_model_alias(REGISTERED_MODEL, alias, "1")
    real = default_evaluator(0)

    def racing(model_dir, shards_dir, split):
        result = real(model_dir, shards_dir, split)
        client.set_registered_model_alias(REGISTERED_MODEL, "champion", "2")  # another promotion got there
        return result

    with pytest.raises(ChampionMoved, match="champion moved from version 1 to 2 .*nothing was promoted"):
        promote(str(models["good"]), shards, policy=POLICY, evaluate=racing)
    after = registry_state()
    assert after["versions"] == [1, 2, 3]
    assert after["aliases"] == {"champion": "2", "challenger": "1"}
    assert "adsrel.gate.decision" not in after["tags"]["3"]


def ours(err: str) -> list[str]:
    """Our lines of stderr (MLflow logs its own when it creates a store)."""
    return [line for line in err.splitlines() if line.startswith("adsrel")]


def test_failed_evaluation_exits_1(store, shards, models, capsys, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(models["fair"], bad)
    (bad / "adapter.safetensors").write_bytes(b"not a safetensors file")  # metadata fine, weights broken
    code, out, err = cli("--candidate", str(bad), "--shards", str(shards), capsys=capsys)
    assert code == 1 and out is None
    first, *rest = ours(err)
    assert first.startswith("adsrel promote: failed: evaluation of the candidate")
    assert [line.split(": ")[1] for line in rest] == ["Spark, MLflow and library output"]  # for the on-call
    assert "Traceback" not in err
    assert registry_state()["aliases"] == {}


def test_bad_inputs_exit_2_with_one_line(store, shards, models, capsys, tmp_path):
    not_a_model = tmp_path / "broken"
    not_a_model.mkdir()
    (not_a_model / "adsrel_model.json").write_text("{}")
    cases = [
        (["--candidate", str(tmp_path / "nope"), "--shards", str(shards)], "model not found"),
        (["--candidate", str(models["fair"]), "--shards", str(tmp_path)], "no manifest.json"),
        (["--candidate", "models:/ads-relevance/7", "--shards", str(shards)], "cannot resolve"),
        (["--candidate", "models:/ads-relevance@nope", "--shards", str(shards)], "cannot resolve"),
        (["--candidate", str(not_a_model), "--shards", str(shards)], "not a usable adsrel model"),
        (["--candidate", str(models["fair"]), "--shards", str(shards), "--policy", str(tmp_path / "p.yaml")],
         "policy not found"),
        (["--candidate", str(models["fair"]), "--shards", str(shards), "--split", "holdout"], "split 'holdout'"),
        (["--candidate", str(models["fair"]), "--shards", str(shards), "--report",
          str(shards / "manifest.json" / "decision.json")], "cannot write the report"),
    ]
    for args, message in cases:
        code, out, err = cli(*args, capsys=capsys)
        assert code == 2 and out is None, (args, err)
        assert len(ours(err)) == 1 and message in ours(err)[0] and "Traceback" not in err, err
    assert registry_state()["versions"] == []  # nothing was registered


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["promote", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0 promoted" in text and "3 kept" in text and "2 user error" in text and "1 an evaluation failed" in text

