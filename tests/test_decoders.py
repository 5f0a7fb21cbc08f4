"""Decoder backbones through the whole CLI: tiny random Llama- and Qwen2-family models built from a
config and saved to a directory (`--set backbone=DIR`) train, evaluate and are promoted; adsrel score
(both engines), the pyfunc and `mlflow models serve` give the scorer's scores; last-token pooling
takes the last real token whatever the tokenizer's padding side, and a row's score does not depend on
its batch mates."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pyarrow.dataset as ds
import pytest

from evaluation.promote import promote
from models.artifact import read_metadata
from models.scoring import Scorer
from pipelines.cli import main
from pipelines.scoring.job import run_score
from tests.shard_data import write_shards
from tests.test_rollout import POLICY, SIGNATURE, candidates
from tests.test_score import served_model
from tests.tiny_models import tiny_decoder_dir


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), rows_per_task=(500, 500, 500))


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_decoder_trains_evaluates_is_promoted_and_scores_alike_everywhere(family, shards, spark, tmp_path,
                                                                            capsys):
    from tests.conftest import temporary_store

    backbone = tiny_decoder_dir(tmp_path / "backbone", family)
    model = tmp_path / "model"
    assert main(["train", "--shards", str(shards), "--output", str(model), "--set", f"backbone={backbone}",
                 "--set", "max_steps=80", "--set", "batch_size=16", "--set", "lr=0.01", "--set", "max_length=32",
                 "--set", "head_dropout=0", "--set", "mlflow=false"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert read_metadata(model)["pooling"] == "last" and trained["best_macro_roc_auc"] > 0.8, trained
    frame = candidates(shards)
    expected = Scorer.load(model).predict(frame)
    with temporary_store(tmp_path / "mlflow") as uri:
        assert main(["evaluate", "--model", str(model), "--shards", str(shards), "--bootstrap", "10"]) == 0
        decision = promote(str(model), shards, policy=POLICY, bootstrap=10)
        assert decision.status == "promoted" and decision.champion_after == "1", decision.decision.reasons
        champion = "models:/ads-relevance@champion"
        raw = frame[[*SIGNATURE, "ad_id"]]
        raw.to_parquet(tmp_path / "candidates.parquet", index=False)
        for engine in ("local", "spark"):
            run_score(champion, [str(tmp_path / "candidates.parquet")], str(tmp_path / engine), engine=engine,
                      **({"spark": spark} if engine == "spark" else {}))
            scored = ds.dataset(tmp_path / engine / "scores").to_table().to_pandas().set_index("ad_id").loc[raw.ad_id]
            np.testing.assert_allclose(scored.score, expected, rtol=0, atol=1e-5, err_msg=engine)
        pyfunc = mlflow.pyfunc.load_model(champion).predict(raw)
        np.testing.assert_allclose(pyfunc["score"].astype(float), expected, rtol=0, atol=1e-5)
        with served_model(champion, uri) as post:
            status, served = post(raw.head(50))
        assert status == 200
        np.testing.assert_allclose([p["score"] for p in served], expected[:50], rtol=0, atol=1e-5)


def test_last_token_pooling_ignores_padding_side_and_batch_mates(shards, tmp_path):
    backbone = tiny_decoder_dir(tmp_path / "backbone", "llama")
    assert main(["train", "--shards", str(shards), "--output", str(tmp_path / "right"), "--set",
                 f"backbone={backbone}", "--set", "max_steps=10", "--set", "batch_size=16",
                 "--set", "max_length=32", "--set", "mlflow=false"]) == 0
    left = tmp_path / "left"  # the same model, its tokenizer told to pad on the left
    shutil.copytree(tmp_path / "right", left)
    settings = json.loads((left / "tokenizer" / "tokenizer_config.json").read_text())
    (left / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({**settings, "padding_side": "left"}))
    frame = candidates(shards).head(64)
    scorer = Scorer.load(tmp_path / "right")
    together = scorer.predict(frame, merge=False)
    alone = np.array([scorer.predict(frame.iloc[[i]], merge=False)[0] for i in range(len(frame))])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)  # one row alone or among longer ones
    np.testing.assert_allclose(Scorer.load(left).predict(frame, merge=False), together, rtol=0, atol=1e-6)
    assert np.std(together) > 1e-4  # the scores differ between rows: the comparison means something
