"""Scorer, shards reading, MLflow pyfunc logging and model URI resolution on tiny artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from evaluation.registry import INPUT_EXAMPLE, log_model, resolve_model_dir
from features.errors import UserError
from features.shards import manifest_digest, read_manifest, read_split, task_names
from models.scoring import Scorer
from tests.shard_data import write_shards
from tests.tiny_models import tiny_artifact

TASKS = ("a", "b", "c")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """Adapters with noise: every task's update changes its scores (a fresh B is zero)."""
    return tiny_artifact(tmp_path_factory.mktemp("art") / "model", TASKS, noise=0.1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), tasks=TASKS)


def test_read_split_restores_task_and_covers_manifest_counts(shards):
    manifest = read_manifest(shards)
    frame = read_split(shards, "test")
    assert task_names(manifest) == list(TASKS)
    for task, counts in manifest["counts"]["test"].items():
        part = frame[frame.task == task]
        assert len(part) == counts["rows"] and part.label.sum() == counts["positives"]
    assert manifest_digest(shards).startswith("sha256:")


def test_shards_without_manifest_are_refused(shards, tmp_path):
    with pytest.raises(UserError, match="no manifest.json"):
        read_manifest(tmp_path)
    with pytest.raises(UserError, match="not found"):
        read_split(tmp_path / "missing", "train")
    with pytest.raises(UserError, match="unknown split"):
        read_split(shards, "holdout")


def test_scorer_routes_tasks_the_same_way_by_name_id_and_segment(artifact, shards):
    scorer = Scorer.load(artifact, max_batch=7)
    frame = read_split(shards, "valid")
    by_name = scorer.predict(frame)
    by_id = scorer.predict(frame.drop(columns=["task"]))
    by_segment = scorer.predict(frame.drop(columns=["task", "task_id"]))
    assert by_name.shape == (len(frame),) and ((by_name > 0) & (by_name < 1)).all()
    np.testing.assert_allclose(by_name, by_id, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_name, by_segment, rtol=1e-5, atol=1e-6)
    # batching and length sorting do not change a row's score
    single = np.array([scorer.predict(frame.iloc[[i]])[0] for i in range(5)])
    np.testing.assert_allclose(single, by_name[:5], rtol=1e-4, atol=1e-5)


def test_tiny_tokenizer_knows_the_words_of_the_tiny_shards(artifact, shards):
    scorer = Scorer.load(artifact)
    ids = scorer.encoder.encode(read_split(shards, "valid").head(20))["input_ids"]
    unknown = scorer.encoder.tokenizer.unk_token_id
    assert all(unknown not in row for row in ids)


def test_scorer_rejects_unknown_tasks(artifact):
    scorer = Scorer.load(artifact)
    frame = INPUT_EXAMPLE.assign(task="zz")
    with pytest.raises(ValueError, match="unknown to this model"):
        scorer.predict(frame)
    with pytest.raises(ValueError, match="match no task"):
        scorer.predict(INPUT_EXAMPLE)  # en-GB travel: no task of this model, no catch-all


def test_pyfunc_logged_registered_and_loaded_by_uri(artifact, shards, mlflow_store):
    ref = log_model(artifact)
    assert ref.version == "1"
    frame = read_split(shards, "test").head(8)
    expected = Scorer.load(artifact).predict(frame)
    loaded = mlflow.pyfunc.load_model("models:/ads-relevance/1")
    scores = loaded.predict(frame[["query", "ad_title", "ad_description", "display_url", "task"]])
    np.testing.assert_allclose(scores["score"].astype(float), expected, rtol=1e-5)
    assert scores["rejected"].isna().all()
    shipped = Path(mlflow.artifacts.download_artifacts(ref.model_uri)) / "code"
    assert sorted(p.name for p in shipped.iterdir()) == ["features", "models"]  # no Spark jobs, no stages
    for uri in ("models:/ads-relevance/1", ref.model_uri):
        meta = json.loads((resolve_model_dir(uri) / "adsrel_model.json").read_text())
        assert [t["name"] for t in meta["tasks"]] == list(TASKS)
    assert resolve_model_dir(str(artifact)) == artifact


def test_resolve_model_dir_errors(tmp_path):
    with pytest.raises(UserError, match="model not found"):
        resolve_model_dir(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="holds no adsrel model"):
        resolve_model_dir(str(tmp_path))


def test_the_adapters_of_the_test_artifact_change_the_scores(artifact, shards):
    scorer = Scorer.load(artifact)
    frame = read_split(shards, "valid")
    with_updates = scorer.predict(frame, merge=False)
    for layer in scorer.model.encoder.layers.values():
        layer.lora_B.data.zero_()
    assert np.abs(scorer.predict(frame, merge=False) - with_updates).max() > 1e-3


def test_merged_per_task_scoring_equals_unmerged_mixed_task_scoring(artifact, shards):
    scorer = Scorer.load(artifact)
    frame = read_split(shards, "valid").sample(frac=1.0, random_state=0)  # tasks interleaved
    unmerged = scorer.predict(frame, merge=False)
    merged = scorer.predict(frame, merge=True)
    np.testing.assert_allclose(merged, unmerged, rtol=0, atol=1e-5)
    assert not any(layer.merged for layer in scorer.model.encoder.layers.values())  # unmerged after


def test_raw_and_normalised_spellings_of_a_pair_score_the_same(artifact):
    scorer = Scorer.load(artifact)
    raw = pd.DataFrame({
        "query": ["  Cheap   SHOES\u00a0online ", "BEST&nbsp;hat", "book\tRome"],
        "ad_title": ["buy &amp; save shoes", "best hat", "book\u3000rome tours"],
        "ad_description": [None, "hat  online", "rome"],
        "display_url": ["SHOES.Example.COM", None, "ROME"],
        "task": ["a", "b", "c"],
    })
    normalised = pd.DataFrame({
        "query": ["cheap shoes online", "best hat", "book rome"],
        "ad_title": ["buy & save shoes", "best hat", "book rome tours"],
        "ad_description": ["", "hat online", "rome"],
        "display_url": ["shoes.example.com", "", "rome"],
        "task": ["a", "b", "c"],
    })
    np.testing.assert_array_equal(scorer.predict(raw), scorer.predict(normalised))


def test_length_batches_cover_every_row_once_within_the_token_budget():
    from models.scoring import length_batches

    lengths = np.array([5, 50, 7, 120, 3, 64, 64, 9])
    rows = np.array([0, 1, 2, 3, 5, 6, 7])
    batches = length_batches(lengths, rows, tokens=128, max_rows=3)
    assert sorted(np.concatenate(batches).tolist()) == sorted(rows.tolist())
    for batch in batches:
        assert len(batch) <= 3 and (len(batch) == 1 or len(batch) * lengths[batch].max() <= 128)
    assert [lengths[b].tolist() for b in batches] == [[5, 7, 9], [50, 64], [64], [120]]
