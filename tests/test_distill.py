"""Teacher -> student: a backbone cut to its first blocks (BERT, Llama, Qwen2), rebuilt exactly by the
model's consumers; distillation that follows the teacher where the labels are wrong, is label training
at alpha 0, scores the teacher once per (teacher, data), refuses a teacher that lacks a task, and names
the teacher in the student's artifact, MLflow run and registered version."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from transformers import Qwen2Config, Qwen2Model

from evaluation.metrics import roc_auc
from features.shards import read_split
from models.artifact import load_model, model_digest, read_metadata
from models.backbone import fingerprint, keep_first_layers, load_backbone
from models.scoring import Scorer
from pipelines.cli import main
from pipelines.training.config import load_train_config
from pipelines.training.loop import train
from tests.fitted_models import fitted_artifact
from tests.tiny_models import VOCAB, random_batch, tiny_bert, tiny_llama

TASKS = ("a", "b", "c")
CACHE = Path("unset")


@pytest.fixture(scope="module", autouse=True)
def teacher_cache(tmp_path_factory):
    """This module's own teacher cache (not the user's ~/.cache)."""
    global CACHE
    CACHE = tmp_path_factory.mktemp("teacher-cache")


def config(backbone: str, **overrides):
    settings = {"teacher_cache": str(CACHE), "backbone": backbone, "batch_size": 16, "max_steps": 120, "lr": 0.01,
                "eval_every": 120, "mlflow": False, "head_dropout": 0.0, "max_length": 32, "bucket_factor": 4,
                "rank": 8}
    settings.update(overrides)
    return load_train_config(None, [f"{k}={v}" for k, v in settings.items()])


def test_keep_first_layers_is_the_first_blocks_of_the_full_model_for_bert_llama_and_qwen2():
    batch = {k: v for k, v in random_batch().items() if k != "task_ids"}
    qwen = Qwen2Model(Qwen2Config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  num_key_value_heads=2, intermediate_size=48, max_position_embeddings=64)).eval()
    for full in (tiny_bert(), tiny_llama(), qwen):
        with torch.no_grad():
            states = full(**batch, output_hidden_states=True).hidden_states
        cut = keep_first_layers(full, 1)
        assert cut.config.num_hidden_layers == 1 and len(getattr(cut.config, "layer_types", None) or [0]) == 1
        with torch.no_grad():
            out = cut(**batch).last_hidden_state
        final_norm = getattr(cut, "norm", None)  # decoders normalise after the last block
        expected = final_norm(states[1]) if final_norm is not None else states[1]
        torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match=r"backbone_layers must be in 1..2 for this backbone, got 3"):
        keep_first_layers(tiny_bert(), 3)


def test_a_student_of_fewer_blocks_is_rebuilt_exactly_by_its_consumers(tiny_backbone, tiny_shards, tmp_path):
    result = train(tiny_shards, tmp_path / "student", config(tiny_backbone, backbone_layers=1))
    meta = read_metadata(tmp_path / "student")
    assert meta["model"]["backbone_layers"] == 1 and meta["base_model"]["layers"] == 1
    assert meta["base_model"]["fingerprint"] == fingerprint(load_backbone(tiny_backbone, layers=1))
    assert meta["base_model"]["fingerprint"] != fingerprint(load_backbone(tiny_backbone))
    model = load_model(tmp_path / "student")
    assert len(model.encoder.model.encoder.layer) == 1
    # the scorer (evaluation, batch scoring and the pyfunc load through it) reproduces training's validation
    valid = read_split(tiny_shards, "valid")
    scores = Scorer.load(tmp_path / "student").predict(valid)
    for task in TASKS:
        rows = (valid["task"] == task).to_numpy()
        assert roc_auc(valid["label"].to_numpy()[rows], scores[rows]) == pytest.approx(result.valid[task], abs=1e-6)
    assert main(["train", "--shards", str(tiny_shards), "--output", str(tmp_path / "x"), "--set",
                 f"backbone={tiny_backbone}", "--set", "backbone_layers=5", "--set", "mlflow=false"]) == 2


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_shards) -> Path:
    """A teacher that knows the tiny shards' rules (fitted heads on a tiny backbone)."""
    return fitted_artifact(tmp_path_factory.mktemp("teacher") / "model", tiny_shards, TASKS)


@pytest.fixture(scope="module")
def wrong_labels(tmp_path_factory, tiny_shards) -> Path:
    """The tiny shards with every train label flipped (valid and test as they were)."""
    out = tmp_path_factory.mktemp("flipped") / "shards"
    shutil.copytree(tiny_shards, out)
    for path in (out / "shards" / "split=train").rglob("*.parquet"):
        table = pq.read_table(path)
        labels = 1 - table["label"].to_numpy()
        pq.write_table(table.set_column(table.schema.get_field_index("label"), "label",
                                        [labels.astype(table["label"].type.to_pandas_dtype())]), path)
    return out


def test_a_distilled_student_follows_the_teacher_where_the_labels_are_wrong(teacher, wrong_labels, tmp_path,
                                                                          capsys):
    backbone = read_metadata(teacher)["base_model"]["reference"]
    labels_only = train(wrong_labels, tmp_path / "labels", config(backbone))
    taught = train(wrong_labels, tmp_path / "taught", config(backbone, teacher=str(teacher), distill_alpha=1.0))
    assert labels_only.best_macro_auc < 0.45 and taught.best_macro_auc > 0.9, (labels_only.valid, taught.valid)
    log = capsys.readouterr().err
    assert f"teacher {teacher}: scoring the" in log and f"distilled from {teacher} (alpha 1.0, temperature 2.0)" in log
    cached = [p for p in CACHE.glob("*.parquet") if p.name.startswith(model_digest(teacher).split(":")[1][:16])]
    assert len(cached) == 1
    assert read_metadata(tmp_path / "taught")["teacher"] == {"uri": str(teacher), "version": None,
                                                             "digest": model_digest(teacher)}
    # alpha 0: the teacher's term weighs nothing, the very weights of training on the labels alone
    zero = train(wrong_labels, tmp_path / "labels-taught", config(backbone, teacher=str(teacher), distill_alpha=0.0))
    assert zero.best_macro_auc == labels_only.best_macro_auc
    a, b = (load_file(str(tmp_path / d / "adapter.safetensors")) for d in ("labels", "labels-taught"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # another student of the same teacher on the same data reads the teacher's scores
    train(wrong_labels, tmp_path / "again", config(backbone, teacher=str(teacher), distill_alpha=1.0, seed=1,
                                                      backbone_layers=1))
    log = capsys.readouterr().err
    assert "its scores of the train split read from" in log and "scoring the" not in log


def test_a_student_of_some_tasks_caches_its_own_scores_not_every_student_s(teacher, tiny_shards, tmp_path, capsys):
    backbone, cache = read_metadata(teacher)["base_model"]["reference"], tmp_path / "cache"
    for name, only in (("some", {"tasks": "[a]"}), ("all", {}), ("again", {})):
        train(tiny_shards, tmp_path / name, config(backbone, teacher=str(teacher), max_steps=2, eval_every=2,
                                                   teacher_cache=str(cache), **only))
    log = capsys.readouterr().err
    # task a's scores are no answer for a student of every task: it scores them all, the next one reads them
    assert log.count(f"teacher {teacher}: scoring the") == 2 and log.count("its scores of the train split read") == 1
    assert len(list(cache.glob("*.parquet"))) == 2 and not [p for p in cache.iterdir() if p.suffix != ".parquet"]


def test_a_teacher_that_lacks_a_student_task_is_one_line(tiny_shards, tmp_path, capsys):
    partial = fitted_artifact(tmp_path / "ab", tiny_shards, ("a", "b"))
    argv = ["train", "--shards", str(tiny_shards), "--output", str(tmp_path / "s"), "--set", f"teacher={partial}",
            "--set", "mlflow=false", "--set", f"backbone={read_metadata(partial)['base_model']['reference']}"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"adsrel train: error: teacher {partial} does not know task(s) c of these shards: a teacher's task map "
        "must cover the student's tasks")
    assert main([*argv[:-2], "--set", "distill_alpha=1.5"]) == 2
    assert "distill_alpha must be in [0, 1]" in capsys.readouterr().err


def test_the_student_run_and_version_name_the_teacher_version_and_digest(teacher, tiny_shards, tmp_path,
                                                                         mlflow_store):
    import mlflow

    from evaluation.registry import log_model

    assert log_model(teacher).version == "1"
    backbone = read_metadata(teacher)["base_model"]["reference"]
    # given as the directory the retrain DAG trained it in: found in the registry by its digest
    result = train(tiny_shards, tmp_path / "student", config(backbone, teacher=str(teacher), mlflow=True,
                                                             max_steps=10, eval_every=10, backbone_layers=1))
    client = mlflow.MlflowClient()
    expected = {"adsrel.teacher.uri": str(teacher), "adsrel.teacher.version": "1",
                "adsrel.teacher.digest": model_digest(teacher)}
    version = client.get_model_version("ads-relevance", result.model_version)
    assert result.model_version == "2" and expected.items() <= version.tags.items()
    assert expected.items() <= client.get_run(result.run_id).data.tags.items()
    assert read_metadata(tmp_path / "student")["teacher"]["version"] == "1"
    # an ordinary model: its registered pyfunc scores as the scorer does
    frame = read_split(tiny_shards, "test").head(40)
    served = mlflow.pyfunc.load_model(f"models:/ads-relevance/{result.model_version}").predict(
        frame[["query", "ad_title", "ad_description", "display_url", "task"]])["score"].astype(float)
    np.testing.assert_allclose(served, Scorer.load(tmp_path / "student").predict(frame), rtol=1e-5)
