"""`adsrel train` on tiny shards and a tiny random backbone: learning, every method, resume,
data parallel, MLflow, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file, save_file

from features.errors import UserError
from features.shards import read_split
from models.config import METHODS
from models.relevance import trained_names
from models.scoring import Scorer
from pipelines.cli import main
from pipelines.training.config import load_train_config
from pipelines.training.loop import TrainingDiverged, build_model, parameter_groups, train
from tests.shard_data import write_shards

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def backbone(tiny_backbone):
    return tiny_backbone


@pytest.fixture(scope="module")
def shards(tiny_shards):
    return tiny_shards


class Crash(Exception):
    """Stands for a run killed mid-way."""


def crash_at(at: int):
    def on_step(step: int) -> None:
        if step == at:
            raise Crash(f"killed after step {step}")

    return on_step


def config(backbone: str, **overrides):
    settings = {"backbone": backbone, "batch_size": 16, "max_steps": 120, "lr": 0.01, "eval_every": 40,
                "mlflow": False, "head_dropout": 0.0, "max_length": 32, "bucket_factor": 4, "log_every": 10,
                "rank": 8}
    settings.update(overrides)
    return load_train_config(None, [f"{k}={v}" for k, v in settings.items()])


def weights(directory: Path) -> dict:
    return load_file(str(directory / "adapter.safetensors"))


def test_training_learns_opposite_rules_per_task(backbone, shards, tmp_path):
    result = train(shards, tmp_path / "model", config(backbone))
    assert result.best_macro_auc > 0.95, result.valid
    assert all(result.valid[t] > 0.9 for t in ("a", "b", "c")), result.valid
    frame = read_split(shards, "test")
    scores = Scorer.load(tmp_path / "model").predict(frame)
    for task, part in frame.assign(score=scores).groupby("task"):
        pos, neg = part[part.label == 1].score.mean(), part[part.label == 0].score.mean()
        assert pos > neg + 0.2, (task, pos, neg)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "mtl_lora"])
def test_every_method_trains(method, backbone, shards, tmp_path):
    # a shared head cannot hold task b's opposite rule: adapters that know the task must
    head = "per_task" if method in ("lora", "multi_lora", "moe_lora", "full") else "shared"
    lr = 0.002 if method == "full" else 0.01
    result = train(shards, tmp_path / "model", config(backbone, method=method, head=head, lr=lr))
    assert result.best_macro_auc > 0.9, result.valid
    meta_method = Scorer.load(tmp_path / "model").meta["method"]
    assert meta_method == method


def test_task_aware_adapters_learn_opposite_rules_with_a_shared_head(backbone, shards, tmp_path):
    mtl = train(shards, tmp_path / "mtl", config(backbone, head="shared"))
    lora = train(shards, tmp_path / "lora", config(backbone, method="lora", head="shared"))
    assert mtl.valid["b"] > 0.9 and mtl.valid["a"] > 0.9, mtl.valid
    assert min(lora.valid["a"], lora.valid["b"]) < 0.7, lora.valid  # one shared rule cannot fit both


@pytest.mark.parametrize("method", ["mtl_lora", "lora"])
def test_task_lr_scale_sets_the_learning_rate_of_lambda_and_w_only(method, backbone):
    cfg = config(backbone, method=method, task_lr_scale=10)
    model = build_model(cfg, 3)
    groups = parameter_groups(model, cfg)
    by_id = {id(p): g["lr"] for g in groups for p in g["params"]}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(by_id) == {id(p) for p in trainable.values()}
    for name, p in trainable.items():
        task_specific = name.endswith((".lora_lambda", ".lora_w"))
        assert by_id[id(p)] == pytest.approx(0.1 if task_specific else 0.01), name
    assert len(groups) == (2 if method == "mtl_lora" else 1)


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(backbone, shards, tmp_path):
    settings = {"max_steps": 9, "checkpoint_every": 3, "eval_every": 3, "head_dropout": 0.1, "dropout": 0.1}
    whole = tmp_path / "whole"
    train(shards, whole, config(backbone, **settings))

    broken = tmp_path / "broken"
    with pytest.raises(Crash):
        train(shards, broken, config(backbone, **settings), on_step=crash_at(5))
    assert sorted(p.name for p in (tmp_path / "broken.checkpoints").iterdir()) == ["step-00000003"]
    result = train(shards, broken, config(backbone, **settings))
    assert result.steps == 9
    a, b = weights(whole), weights(broken)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_the_model_directory_holds_the_artifact_only_and_checkpoints_go_elsewhere(backbone, shards, tmp_path):
    legacy = tmp_path / "model" / "checkpoints" / "step-00000001"  # where versions before kept them
    legacy.mkdir(parents=True)
    (legacy / "optimizer.bin").write_bytes(b"pickle")
    settings = {"max_steps": 4, "eval_every": 2, "checkpoint_every": 2}
    train(shards, tmp_path / "model", config(backbone, **settings), checkpoints=tmp_path / "ckpt")
    files = sorted(str(p.relative_to(tmp_path / "model")) for p in (tmp_path / "model").rglob("*") if p.is_file())
    assert {"adsrel_model.json", "adapter.safetensors"} <= set(files)
    assert all(f.startswith("tokenizer/") for f in files if f not in ("adsrel_model.json", "adapter.safetensors"))
    assert not any(f.endswith((".bin", ".pkl", ".pt", ".pth")) for f in files), files
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step-00000002", "step-00000004"]
    assert {p.suffix for p in (tmp_path / "ckpt" / "step-00000004").iterdir()} >= {".pkl", ".bin", ".json"}
    assert not (tmp_path / "model.checkpoints").exists()


def test_a_checkpoint_holds_the_trained_weights_only_and_resume_needs_all_of_them(backbone, shards, tmp_path):
    settings = {"max_steps": 6, "checkpoint_every": 3, "eval_every": 3}
    with pytest.raises(Crash):
        train(shards, tmp_path / "m", config(backbone, **settings), on_step=crash_at(4))
    saved_file = tmp_path / "m.checkpoints" / "step-00000003" / "model.safetensors"
    saved = load_file(saved_file)
    model = build_model(config(backbone, **settings), 3)
    assert set(saved) == trained_names(model)
    assert sum(t.numel() for t in saved.values()) < sum(p.numel() for p in model.parameters()) / 2
    del saved[sorted(saved)[0]]
    save_file(saved, saved_file)
    with pytest.raises(UserError, match="lacks trained weights"):
        train(shards, tmp_path / "m", config(backbone, **settings))


def test_resume_refuses_a_checkpoint_of_another_config(backbone, shards, tmp_path):
    with pytest.raises(Crash):
        train(shards, tmp_path / "m", config(backbone, max_steps=6, checkpoint_every=3), on_step=crash_at(4))
    with pytest.raises(UserError, match="differs in rank"):
        train(shards, tmp_path / "m", config(backbone, max_steps=6, checkpoint_every=3, rank=2))
    fresh = train(shards, tmp_path / "m", config(backbone, max_steps=6, rank=2, resume=False))
    assert fresh.steps == 6


def test_a_checkpoint_written_before_a_config_key_existed_resumes_under_its_default(backbone, shards, tmp_path):
    with pytest.raises(Crash):
        train(shards, tmp_path / "m", config(backbone, max_steps=6, checkpoint_every=3), on_step=crash_at(4))
    state_file = tmp_path / "m.checkpoints" / "step-00000003" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    for key in ("backbone_layers", "teacher", "distill_alpha", "distill_temperature"):  # added later
        del state["identity"][key]
    state_file.write_text(json.dumps(state))
    resumed = train(shards, tmp_path / "m", config(backbone, max_steps=6, checkpoint_every=3))
    assert resumed.steps == 6
    with pytest.raises(Crash):
        train(shards, tmp_path / "n", config(backbone, max_steps=6, checkpoint_every=3), on_step=crash_at(4))
    state_file = tmp_path / "n.checkpoints" / "step-00000003" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["identity"]["backbone_layers"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(UserError, match="differs in backbone_fingerprint, backbone_layers"):  # not the default
        train(shards, tmp_path / "n", config(backbone, max_steps=6, checkpoint_every=3, backbone_layers=1))


def test_diverging_loss_stops_with_the_last_good_checkpoint_intact(backbone, tmp_path):
    data = write_shards(tmp_path / "shards")
    out = tmp_path / "model"
    with pytest.raises(Crash):
        train(data, out, config(backbone, max_steps=8, eval_every=4, checkpoint_every=4), on_step=crash_at(4))
    before = weights(out)
    for path in (data / "shards" / "split=train").rglob("*.parquet"):  # a corrupted weight column
        table = pq.read_table(path)
        table = table.set_column(table.schema.get_field_index("weight"), "weight",
                                 [np.full(table.num_rows, np.inf)])
        pq.write_table(table, path)
    with pytest.raises(TrainingDiverged, match="loss became inf at step 5.*step-00000004"):
        train(data, out, config(backbone, max_steps=8, eval_every=4, checkpoint_every=4))
    assert (tmp_path / "model.checkpoints" / "step-00000004" / "trainer_state.json").is_file()
    after = weights(out)
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)


def test_data_parallel_two_processes_match_one_process(backbone, shards, tmp_path):
    common = ["--shards", str(shards), "--set", f"backbone={backbone}", "--set", "max_steps=6", "--set", "lr=0.01",
              "--set", "mlflow=false", "--set", "head_dropout=0.0", "--set", "max_length=32", "--set",
              "bucket_factor=4", "--set", "eval_every=6", "--set", "rank=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    one = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", *common, "--set", "batch_size=8",
                          "--output", str(tmp_path / "one")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "-m", "pipelines.cli", "train", *common, "--set", "batch_size=4", "--output",
                          str(tmp_path / "two")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "(2 process(es)" in two.stderr
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_mlflow_run_holds_params_metrics_and_a_loadable_registered_model(backbone, shards, tmp_path, mlflow_store):
    started = datetime.now(UTC).date()
    result = train(shards, tmp_path / "model", config(backbone, mlflow=True, max_steps=20, eval_every=10))
    run = mlflow.get_run(result.run_id)
    assert run.data.params["method"] == "mtl_lora" and run.data.params["rank"] == "8"
    # not the seeded random name every seed-0 run would share: what it trained, and when
    assert run.info.run_name in {f"train-mtl_lora-{day}" for day in (started, datetime.now(UTC).date())}
    version = mlflow.MlflowClient().get_model_version("ads-relevance", "1")
    assert run.data.tags["adsrel.version"] == "1" and run.data.tags["adsrel.model_digest"] == version.tags[
        "adsrel.model_digest"]  # one filter finds a version's training and its evaluations
    assert version.description.startswith(f"mtl_lora on {backbone}, 3 segments: a, b, c.")
    assert "train rows, step 20." in version.description
    assert run.data.tags["manifest_digest"].startswith("sha256:") and run.data.tags["backbone"] == backbone
    assert {"train/loss", "train/lr", "train/examples_per_s", "valid/a/roc_auc", "valid/macro/roc_auc"} <= set(
        run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "train/loss")
    assert [m.step for m in history] == [10, 20]
    assert result.model_version == "1"
    frame = read_split(shards, "test").head(12)
    model = mlflow.pyfunc.load_model("models:/ads-relevance/1")
    got = model.predict(frame[["query", "ad_title", "ad_description", "display_url", "task"]])["score"].astype(float)
    np.testing.assert_allclose(got, Scorer.load(tmp_path / "model").predict(frame), rtol=1e-5)
    assert model.metadata.signature is not None

    # the same command again: the run is finished, so nothing is trained, logged or registered again
    again = train(shards, tmp_path / "model", config(backbone, mlflow=True, max_steps=20, eval_every=10))
    assert (again.run_id, again.steps, again.model_version) == (result.run_id, 20, "1")
    assert again.valid == result.valid and again.examples_per_second is None
    assert len(mlflow.MlflowClient().search_model_versions("name = 'ads-relevance'")) == 1
    experiment = run.info.experiment_id
    assert len(mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")) == 1


def test_an_early_stopped_run_run_again_trains_no_further(backbone, shards, tmp_path):
    settings = {"max_steps": 40, "eval_every": 2, "early_stopping_patience": 1, "lr": 1e-9}
    first = train(shards, tmp_path / "m", config(backbone, **settings))
    assert first.steps < 40  # no better AUC with a learning rate of 1e-9: stopped at the second evaluation
    before = weights(tmp_path / "m")
    again = train(shards, tmp_path / "m", config(backbone, **settings))
    assert again.steps == first.steps and again.valid == first.valid and again.examples_per_second is None
    after = weights(tmp_path / "m")
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shards", "{tmp}/nowhere"], "shards directory not found"),
        (["--shards", "{tmp}"], "no manifest.json"),
        (["--shards", "{shards}", "--set", "tasks=[a,zz]"], "tasks not in the manifest: zz"),
        (["--shards", "{shards}", "--set", "backbone=/no/such/model"], "backbone"),
        (["--shards", "{shards}", "--set", "ranks=4"], "unknown key 'ranks'"),
        (["--shards", "{shards}", "--set", "rank=four"], "rank must be int"),
        (["--shards", "{shards}", "--set", "method=prompt"], "method must be one of"),
        (["--shards", "{shards}", "--set", "rank=-1"], "rank must be a positive integer"),
        (["--shards", "{shards}", "--set", "head=x"], "head must be one of"),
        (["--shards", "{shards}", "--config", "{tmp}/missing.yaml"], "config not found"),
    ],
)
def test_bad_inputs_give_one_line_errors(args, message, shards, tmp_path, capsys):
    argv = ["train", *[a.format(tmp=tmp_path, shards=shards) for a in args], "--output", str(tmp_path / "out"),
            "--set", "mlflow=false"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
