"""The quality benchmark's own logic: equal trials, choices made on valid only, and the measure of
how far mtl_lora's task parameters moved from the start that training really had."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.quality import TRIALS, chosen_trial, mtl_structure, run_plan, supported_tasks, table, variant_overrides
from pipelines.training.config import load_train_config
from tests.tiny_models import tiny_artifact

TASKS = ("a", "b", "c")
ARGS = argparse.Namespace(epochs=2.0, batch_size=32, max_length=64, valid_rows=500)
RANKS = {"lora": 14, "task_lora": 2, "multi_lora": 5, "moe_lora": 5, "mtl_lora": 8}


def test_every_adapter_method_gets_the_same_number_of_trials_and_each_is_a_valid_config():
    adapters = {v: trials for v, trials in TRIALS.items() if v != "full"}
    assert len({len(trials) for trials in adapters.values()}) == 1
    for variant, trials in TRIALS.items():
        for trial in trials:
            config = load_train_config(None, variant_overrides(variant, trial, RANKS, ARGS, seed=1))
            assert config.epochs == 2.0 and config.seed == 1 and config.lr == trial["lr"]
            assert config.segment_in_text == (variant == "lora_segment")


def test_the_choice_waits_for_every_trial_and_takes_the_best_valid_auc():
    runs = [{"variant": "lora", "phase": "trial", "trial": 0, "valid_macro": 0.80},
            {"variant": "lora", "phase": "trial", "trial": 1, "valid_macro": 0.85}]
    assert chosen_trial(runs, "lora") is None
    runs.append({"variant": "lora", "phase": "trial", "trial": 2, "valid_macro": None})
    runs.append({"variant": "lora", "phase": "seed", "trial": 0, "valid_macro": 0.99, "test": {}})  # not a trial
    assert chosen_trial(runs, "lora") == 1


def test_each_method_finishes_its_trials_and_seeds_before_the_next_starts():
    plan = run_plan(["lora", "mtl_lora"], [0, 1, 2])
    assert [v for v, *_ in plan] == ["lora"] * 5 + ["mtl_lora"] * 5
    assert plan[:5] == [("lora", "trial", 0, 0), ("lora", "trial", 1, 0), ("lora", "trial", 2, 0),
                        ("lora", "seed", None, 1), ("lora", "seed", None, 2)]


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_structure_measures_movement_from_the_initialisation_training_built(tmp_path, noise):
    model = tiny_artifact(tmp_path / "model", TASKS, seed=0, noise=noise)  # its start, plus noise if any
    from models.config import AdapterConfig

    tau = AdapterConfig(num_tasks=len(TASKS)).temperature  # the tiny artifact's τ
    config = load_train_config(None, [f"backbone={tmp_path / 'model-backbone'}", "rank=4", "seed=0",
                                      f"temperature={tau}"])
    per_task = mtl_structure(model, config)["per_task"]
    assert set(per_task) == set(TASKS)
    for moved in per_task.values():
        if noise:
            assert moved["lambda_shift"] > 0.01 and moved["mixing_moved"] > 0.001
        else:
            assert moved["lambda_shift"] == pytest.approx(0, abs=1e-7)
            assert moved["mixing_moved"] == pytest.approx(0, abs=1e-7)
            assert moved["concentration_trained"] == pytest.approx(moved["concentration_start"])


def test_macro_auc_over_supported_tasks_leaves_out_a_segment_too_small_for_the_gate():
    import pandas as pd

    from evaluation.gate import GatePolicy

    test = pd.DataFrame({"task": ["big"] * 120 + ["tiny"] * 6, "label": [0, 1] * 60 + [0, 1, 0, 1, 0, 0]})
    policy = GatePolicy(min_task_positives=2, min_task_negatives=2)
    assert supported_tasks(test, policy) == ["big"]
    runs = [{"variant": "lora", "settings": {"lr": 1e-3}, "trainable": 10, "train_s": 1.0, "macro": m,
             "test": {"big": b, "tiny": t}} for m, b, t in ((0.8, 0.7, 0.9), (0.7, 0.6, 0.8))]
    row = table(runs, ["big", "tiny"], ["big"]).splitlines()[-1]
    assert "| 0.7500 ± 0.0707 | 0.6500 ± 0.0707 |" in row
