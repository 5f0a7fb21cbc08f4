"""Save/load of adapters and heads in safetensors + JSON, onto a fresh base model."""

from __future__ import annotations

import json

import pytest
import torch

from models.artifact import META_FILE, WEIGHTS_FILE, ArtifactError, load_model, save_model
from models.config import AdapterConfig
from models.relevance import RelevanceModel, RelevanceModelConfig
from tiny_models import random_batch, tiny_bert, tiny_llama


def trained_model(backbone: str, method: str = "mtl_lora", head: str = "per_task") -> RelevanceModel:
    adapter = AdapterConfig(method=method, num_tasks=3, rank=4)
    config = RelevanceModelConfig(backbone=backbone, adapter=adapter, head=head)
    model = RelevanceModel.from_config(config).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("method", ["mtl_lora", "lora", "task_lora", "multi_lora", "moe_lora", "full"])
def test_round_trip_gives_identical_scores(tmp_path, method: str) -> None:
    base = tmp_path / "base"
    tiny_bert().save_pretrained(str(base))
    model = trained_model(str(base), method)
    batch = random_batch(num_tasks=3)
    expected = model(**batch)
    save_model(model, tmp_path / "model", tasks=[{"name": "a", "id": 0}], max_length=32)

    meta = json.loads((tmp_path / "model" / META_FILE).read_text())
    assert meta["method"] == method and meta["tasks"] == [{"name": "a", "id": 0}] and meta["max_length"] == 32
    assert meta["base_model"]["fingerprint"] == model.base_fingerprint
    loaded = load_model(tmp_path / "model").eval()
    assert torch.equal(loaded(**batch), expected)
    assert not list(tmp_path.joinpath("model").glob("*.bin")) and not list(tmp_path.joinpath("model").glob("*.pt"))


def test_only_trained_tensors_are_stored(tmp_path) -> None:
    base = tmp_path / "base"
    tiny_llama().save_pretrained(str(base))
    model = trained_model(str(base), head="shared")
    save_model(model, tmp_path / "model")
    from safetensors.torch import load_file

    names = set(load_file(str(tmp_path / "model" / WEIGHTS_FILE)))
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or n.startswith("head.") for n in names)


def test_loading_onto_another_base_model_fails_clearly(tmp_path) -> None:
    tiny_bert(seed=0).save_pretrained(str(tmp_path / "base"))
    tiny_bert(seed=1).save_pretrained(str(tmp_path / "other"))
    tiny_llama().save_pretrained(str(tmp_path / "llama"))
    save_model(trained_model(str(tmp_path / "base")), tmp_path / "model")
    for other in ("other", "llama"):
        with pytest.raises(ArtifactError, match="fingerprint"):
            load_model(tmp_path / "model", backbone=str(tmp_path / other))


def test_missing_or_broken_artifacts_fail_clearly(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="not an adsrel model directory"):
        load_model(tmp_path)
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RelevanceModel.from_config(RelevanceModelConfig(backbone="./no/such/model"))


def test_merged_model_cannot_be_saved(tmp_path) -> None:
    base = tmp_path / "base"
    tiny_bert().save_pretrained(str(base))
    model = trained_model(str(base))
    model.merge(0)
    with pytest.raises(ArtifactError, match="unmerge"):
        save_model(model, tmp_path / "model")
