"""The GPU benchmark prepared for issue 34, run as its CPU smoke test: MTL-LoRA and PEFT LoRA adapt the
same projections at the same rank, checkpointing is really on where it says so, and the figures add up."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.gpu_scale import build_base, build_variants, main, model_flops_per_token
from models.injection import adapter_layers


def test_the_variants_are_matched_and_checkpointed_where_named():
    base = build_base("tiny", 32, torch.device("cpu"))
    variants = build_variants(base, rank=4)
    mtl_targets = set(adapter_layers(variants["mtl_lora"].model))
    peft_targets = {name.removeprefix("base_model.model.") for name, module in variants["peft_lora"].named_modules()
                    if hasattr(module, "lora_A") and isinstance(module, torch.nn.Module) and "lora_A" in dict(
                        module.named_children())}
    assert mtl_targets == peft_targets and len(mtl_targets) == 2 * 7  # q k v o gate up down in each block
    assert {m.lora_A["default"].out_features for n, m in variants["peft_lora"].named_modules()
            if n.removeprefix("base_model.model.") in peft_targets} == {4}
    assert variants["mtl_lora-checkpointing"].gradient_checkpointing and not variants["mtl_lora"].gradient_checkpointing
    assert variants["peft_lora-checkpointing"].base_model.model.is_activation_checkpointing
    assert not variants["peft_lora"].base_model.model.is_activation_checkpointing
    config = base.config  # 4 N + 12 L d T, embeddings not counted
    frozen = sum(p.numel() for n, p in base.named_parameters() if "embed_tokens" not in n)
    assert model_flops_per_token(base, 32) == 4 * frozen + 12 * config.num_hidden_layers * config.hidden_size * 32


def test_it_runs_on_the_cpu_and_reports_every_variant(tmp_path, capsys):
    assert main(["--size", "tiny", "--batch", "2", "--length", "16", "--steps", "1", "--warmup", "1",
                 "--json", str(tmp_path / "out.json")]) == 0
    figures = json.loads((tmp_path / "out.json").read_text())
    assert figures == json.loads(capsys.readouterr().out)
    assert set(figures["variants"]) == {"mtl_lora", "peft_lora", "mtl_lora-checkpointing", "peft_lora-checkpointing"}
    flops = model_flops_per_token(build_base("tiny", 16, torch.device("cpu")), 16) * 2 * 16
    for row in figures["variants"].values():
        assert row["tokens_per_s"] == pytest.approx(2 * 16 / row["step_seconds"], rel=0.01)
        assert row["mfu"] == pytest.approx(flops / row["step_seconds"] / (figures["matmul_peak_tflops"] * 1e12),
                                           rel=0.05, abs=1e-4)  # as rounded in the figures
        assert row["step_peak_memory_gib"] is None  # no GPU
    assert figures["device"] == "cpu" and figures["mtl_vs_peft_step"] > 0
