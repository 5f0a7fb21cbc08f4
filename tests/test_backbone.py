"""Loading the frozen backbone: quiet when the checkpoint holds what it should, a warning when
backbone weights had to be randomly initialised."""

import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel

from models.backbone import load_backbone
from tests.tiny_models import tiny_backbone_dir

ROOT = Path(__file__).resolve().parent.parent


def test_a_checkpoint_with_a_pooler_loads_without_a_report_or_warning(tmp_path):
    """In a child process: transformers logs through its own stderr handler, out of pytest's reach."""
    directory = tiny_backbone_dir(tmp_path / "backbone")
    BertModel(BertConfig.from_pretrained(directory), add_pooling_layer=True).save_pretrained(directory)
    assert any(k.startswith("pooler.") for k in load_file(f"{directory}/model.safetensors"))
    load = f"from models.backbone import load_backbone; print(load_backbone({directory!r}).pooler)"
    done = subprocess.run([sys.executable, "-c", load], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert "LOAD REPORT" not in done.stderr and "UNEXPECTED" not in done.stderr, done.stderr
    assert "Loading weights" not in done.stderr and "randomly initialised" not in done.stderr, done.stderr


def test_weights_missing_from_the_checkpoint_are_warned_about(tmp_path):
    directory = tiny_backbone_dir(tmp_path / "backbone")
    weights = load_file(f"{directory}/model.safetensors")
    dropped = sorted(k for k in weights if "layer.1.output.dense" in k)
    for name in dropped:
        del weights[name]
    save_file(weights, f"{directory}/model.safetensors", metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=r"2 weights are not in its checkpoint and were randomly initialised") as seen:
        load_backbone(directory)
    assert all(name in str(seen[0].message) for name in dropped)
