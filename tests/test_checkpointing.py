"""Gradient checkpointing with task routing: on a tiny BERT and a tiny Llama, a mixed-task batch gives
every trainable tensor the same gradient with and without it (the backbone's own checkpointing would
recompute without task ids), evaluation is untouched, and one training step through the CLI gives the
same weights either way."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from models.config import AdapterConfig
from models.relevance import RelevanceModel, RelevanceModelConfig
from pipelines.cli import main
from tests.tiny_models import random_batch, tiny_bert, tiny_llama


def model_of(backbone: torch.nn.Module, method: str) -> RelevanceModel:
    torch.manual_seed(0)
    config = RelevanceModelConfig(backbone="tiny", adapter=AdapterConfig(method=method, num_tasks=3, rank=4),
                                  head="per_task", head_dropout=0.0)
    model = RelevanceModel(backbone, config)
    with torch.no_grad():  # B^i start at zero: A's gradient would be zero either way
        for parameter in model.trainable_state_dict().values():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.train()


def gradients(model: RelevanceModel, batch: dict) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    logits = model(**batch)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("method", ["mtl_lora", "lora"])
def test_gradients_with_and_without_checkpointing_are_equal_on_a_mixed_task_batch(family, method):
    make = tiny_bert if family == "bert" else tiny_llama
    batch = random_batch(batch=6, tokens=9, num_tasks=3)  # tasks 0, 1, 2, 0, 1, 2; one padded row
    plain = gradients(model_of(make(), method), batch)
    model = model_of(make(), method)
    model.encoder.enable_gradient_checkpointing()
    checkpointed = gradients(model, batch)
    assert plain.keys() == checkpointed.keys() and len(plain) > 4
    for name, grad in plain.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():  # evaluation is not checkpointed and gives the same logits
        model.eval()
        reference = model_of(make(), method).eval()
        torch.testing.assert_close(model(**batch), reference(**batch))


def test_the_backbones_own_checkpointing_would_lose_the_task_ids():
    model = model_of(tiny_llama(), "mtl_lora")
    model.encoder.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    with pytest.raises(ValueError, match="task_ids"):
        gradients(model, random_batch(batch=6, tokens=9, num_tasks=3))


def test_one_training_step_through_the_cli_gives_the_same_weights_either_way(tiny_backbone, tiny_shards, tmp_path):
    weights = {}
    for on in (False, True):
        out = tmp_path / f"model-{on}"
        argv = ["train", "--shards", str(tiny_shards), "--output", str(out), "--set", f"backbone={tiny_backbone}",
                "--set", "max_steps=1", "--set", "batch_size=16", "--set", "mlflow=false", "--set", "head_dropout=0",
                "--set", f"gradient_checkpointing={str(on).lower()}"]
        assert main(argv) == 0
        weights[on] = load_file(str(out / "adapter.safetensors"))
    for name, tensor in weights[False].items():
        torch.testing.assert_close(weights[True][name], tensor, rtol=1e-5, atol=1e-7, msg=name)
