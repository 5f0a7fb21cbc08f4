"""Injection of every method into tiny BERT and Llama models, task routing, merge and export."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, BertConfig, BertForSequenceClassification

from models.adapter_layer import AdapterLayer
from models.artifact import export_merged
from models.config import METHODS, AdapterConfig
from models.heads import pool
from models.injection import MultiTaskModel
from models.relevance import RelevanceModel, RelevanceModelConfig
from tiny_models import random_batch, tiny_bert, tiny_llama

ADAPTER_METHODS = [m for m in METHODS if m != "full"]
TASKS = 3
FAMILIES = {"bert": tiny_bert, "llama": tiny_llama}


def perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Move trainable tensors off their initialisation (B = 0 would hide the adapters)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_every_method_adapts_and_trains(family: str, method: str) -> None:
    base = FAMILIES[family]()
    batch = random_batch(num_tasks=TASKS)
    task_ids = batch.pop("task_ids")
    frozen = base(**batch).last_hidden_state
    model = MultiTaskModel(copy.deepcopy(base), AdapterConfig(method=method, num_tasks=TASKS, rank=4))
    expected_targets = 12 if family == "bert" else 14  # q,k,v,o + mlp, two layers
    assert len(model.adapted_modules) == expected_targets
    torch.testing.assert_close(model(**batch, task_ids=task_ids).last_hidden_state, frozen)  # fresh: no change

    perturb(model)
    out = model(**batch, task_ids=task_ids).last_hidden_state
    assert not torch.allclose(out, frozen)
    out.square().mean().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    assert all(model.get_parameter(n).grad is not None for n in trainable)
    assert model.trainable_parameter_count() == sum(model.get_parameter(n).numel() for n in trainable)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["mtl_lora", "task_lora", "moe_lora"])
def test_task_aware_methods_route_each_example_to_its_task(family: str, method: str) -> None:
    model = MultiTaskModel(FAMILIES[family](), AdapterConfig(method=method, num_tasks=TASKS, rank=4))
    perturb(model)
    batch = random_batch(batch=6, num_tasks=TASKS)
    task_ids = batch.pop("task_ids")
    mixed = model(**batch, task_ids=task_ids).last_hidden_state
    for task in range(TASKS):
        rows = (task_ids == task).nonzero().squeeze(1)
        alone = model(**{k: v[rows] for k, v in batch.items()}, task_ids=torch.full((len(rows),), task))
        torch.testing.assert_close(mixed[rows], alone.last_hidden_state, atol=1e-5, rtol=1e-4)
    other = model(**batch, task_ids=(task_ids + 1) % TASKS).last_hidden_state
    assert not torch.allclose(mixed, other)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_merge_matches_unmerged(family: str, method: str) -> None:
    model = MultiTaskModel(FAMILIES[family](), AdapterConfig(method=method, num_tasks=TASKS, rank=4))
    perturb(model)
    batch = random_batch(num_tasks=TASKS)
    batch.pop("task_ids")
    expected = model(**batch, task_ids=torch.full((4,), 1)).last_hidden_state
    model.merge(1)
    torch.testing.assert_close(model(**batch).last_hidden_state, expected, atol=1e-4, rtol=1e-4)
    model.unmerge()
    torch.testing.assert_close(model(**batch, task_ids=torch.full((4,), 1)).last_hidden_state, expected)


def test_works_on_a_sequence_classification_model_and_regex_targets() -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
    classifier = BertForSequenceClassification(config)
    adapter = AdapterConfig(num_tasks=2, rank=2, target_modules=r".*attention\.self\.(query|value)")
    model = MultiTaskModel(classifier, adapter)
    assert len(model.adapted_modules) == 4
    logits = model(input_ids=torch.randint(0, 64, (2, 5)), task_ids=torch.tensor([0, 1])).logits
    assert logits.shape == (2, 2)


@pytest.mark.parametrize(
    "task_ids, message",
    [
        (None, "pass task_ids"),
        (torch.tensor([0, 1, 3, 0]), r"in \[0, 3\), got values in \[0, 3\]"),
        (torch.tensor([0, -1, 0, 0]), r"got values in \[-1, 0\]"),
        (torch.tensor([0, 1]), "2 entries for a batch of 4"),
        (torch.tensor([0.0, 1.0, 0.0, 0.0]), "integer tensor"),
        ([0, 1, 2, 0], "integer tensor"),
    ],
)
def test_bad_task_ids_are_rejected(task_ids, message: str) -> None:
    model = MultiTaskModel(tiny_bert(), AdapterConfig(num_tasks=TASKS, rank=2))
    batch = random_batch(num_tasks=TASKS)
    batch.pop("task_ids")
    with pytest.raises(ValueError, match=message):
        model(**batch, task_ids=task_ids)


def test_task_agnostic_methods_need_no_task_ids() -> None:
    model = MultiTaskModel(tiny_bert(), AdapterConfig(method="lora", num_tasks=TASKS, rank=2))
    batch = random_batch(num_tasks=TASKS)
    batch.pop("task_ids")
    assert model(**batch).last_hidden_state.shape == (4, 7, 32)


def test_bad_targets_and_config_are_rejected() -> None:
    with pytest.raises(ValueError, match="match no nn.Linear"):
        MultiTaskModel(tiny_bert(), AdapterConfig(target_modules=["nothing_here"]))
    with pytest.raises(ValueError, match="method must be one of"):
        AdapterConfig(method="prefix")
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        AdapterConfig(rank=0)
    with pytest.raises(ValueError, match="no default target_modules"):
        MultiTaskModel(torch.nn.Sequential(torch.nn.Linear(2, 2)), AdapterConfig())


def test_full_method_trains_everything() -> None:
    model = MultiTaskModel(tiny_bert(), AdapterConfig(method="full", num_tasks=TASKS))
    assert model.adapted_modules == []
    assert model.trainable_parameter_count() == sum(p.numel() for p in model.parameters())


def test_adapter_layers_are_only_where_targeted() -> None:
    model = MultiTaskModel(tiny_bert(), AdapterConfig(num_tasks=TASKS, rank=2, target_modules=["query"]))
    adapted = [n for n, m in model.named_modules() if isinstance(m, AdapterLayer)]
    assert adapted == ["model.encoder.layer.0.attention.self.query", "model.encoder.layer.1.attention.self.query"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", ["shared", "per_task"])
def test_export_merged_plain_model_scores_like_the_adapted_one(tmp_path, family: str, head: str) -> None:
    base_dir = tmp_path / "base"
    FAMILIES[family]().save_pretrained(str(base_dir))
    config = RelevanceModelConfig(backbone=str(base_dir), adapter=AdapterConfig(num_tasks=TASKS, rank=4), head=head)
    model = RelevanceModel.from_config(config).eval()
    perturb(model)
    batch = random_batch(num_tasks=TASKS)
    batch.pop("task_ids")
    task = 2
    expected = model(**batch, task_ids=torch.full((4,), task))

    export_merged(model, task, tmp_path / "export")
    plain = AutoModel.from_pretrained(str(tmp_path / "export")).eval()
    assert not any(isinstance(m, AdapterLayer) for m in plain.modules())
    head_weights = load_file(str(tmp_path / "export" / "head.safetensors"))
    pooled = pool(plain(**batch).last_hidden_state, batch["attention_mask"], model.pooling)
    logits = pooled @ head_weights["weight"].T + head_weights["bias"]
    torch.testing.assert_close(logits.squeeze(-1), expected, atol=1e-5, rtol=1e-4)
    # The exported copy leaves the live model untouched.
    torch.testing.assert_close(model(**batch, task_ids=torch.full((4,), task)), expected)
