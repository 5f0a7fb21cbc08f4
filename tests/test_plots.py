"""The analysts' MTL-LoRA pictures: what each number means, on layers whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from evaluation.plots import (
    lambda_shift,
    lambda_similarity,
    lambda_similarity_figure,
    mixing_concentration,
    mixing_concentration_figure,
    per_block,
    shared_segment,
)
from models.mtl_lora import MTLLoRALinear

TASKS = ("us-retail", "gb-retail", "finance")
SEGMENTS = {"us-retail": (("en-US",), ("retail",)), "gb-retail": (("en-GB",), ("retail",)),
            "finance": (("*",), ("finance",))}


def layer(**kwargs) -> MTLLoRALinear:
    return MTLLoRALinear(nn.Linear(6, 5), num_tasks=len(TASKS), rank=4, num_up=3, **kwargs)


class Encoder(nn.Module):
    """Two transformer blocks with two adapted linears each, named as in BERT."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.ModuleList(nn.ModuleDict({"query": layer(), "value": layer()}) for _ in range(2))


def test_concentration_is_zero_for_equal_mixing_and_one_for_a_single_up_projection():
    equal = layer(mixing_init="uniform")
    np.testing.assert_allclose(mixing_concentration(equal), 0.0, atol=1e-6)  # float32 softmax
    with torch.no_grad():
        equal.lora_w.copy_(torch.tensor([[50.0, 0, 0], [0, 50.0, 0], [0, 0, 0]]))
    np.testing.assert_allclose(mixing_concentration(equal), [1.0, 1.0, 0.0], atol=1e-9)


def test_lambda_shift_is_zero_at_the_start_and_measures_the_distance_from_the_identity():
    fresh = layer()
    np.testing.assert_allclose(lambda_shift(fresh), 0.0)
    with torch.no_grad():
        fresh.lora_lambda[1].mul_(2.0)  # 2I - I = I: a shift of exactly 1
    np.testing.assert_allclose(lambda_shift(fresh), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(lambda_shift(layer(lambda_form="diagonal")), 0.0)


def test_values_are_averaged_per_transformer_block():
    model = Encoder()
    with torch.no_grad():
        model.layer[1]["query"].lora_lambda.mul_(2.0)  # block 1: one layer at shift 1, one at 0
    columns, values = per_block(model, lambda_shift)
    assert columns == ["L0", "L1"]
    np.testing.assert_allclose(values, [[0.0, 0.5]] * len(TASKS))
    assert per_block(nn.Linear(2, 2), lambda_shift) is None


def test_similarity_compares_what_the_tasks_learned_not_the_shared_identity_start():
    model = Encoder()
    update = torch.randn(4, 4)
    with torch.no_grad():
        for block in model.layer:
            for adapted in block.values():
                adapted.lora_lambda[0].add_(update)
                adapted.lora_lambda[1].add_(2 * update)
                adapted.lora_lambda[2].sub_(update)
    np.testing.assert_allclose(lambda_similarity(model), [[1, 1, -1], [1, 1, -1], [-1, -1, 1]], atol=1e-5)


@pytest.mark.parametrize("a, b, mark", [
    ("us-retail", "gb-retail", "V"),
    ("us-retail", "finance", ""),  # '*' names no market in common
])
def test_shared_segment_names_a_common_market_or_vertical(a, b, mark):
    assert shared_segment(SEGMENTS[a], SEGMENTS[b]) == mark
    assert shared_segment((("en-US",), ("retail",)), (("en-US", "en-GB"), ("travel", "retail"))) == "MV"


def test_similarity_figure_marks_related_tasks_and_the_heatmap_has_one_cell_per_task_and_block():
    model = Encoder()
    texts = [t.get_text() for t in lambda_similarity_figure(model, TASKS, SEGMENTS).axes[0].texts]
    assert sum(t.endswith("\nV") for t in texts) == 2 and len(texts) == len(TASKS) ** 2
    heatmap = mixing_concentration_figure(model, TASKS).axes[0]
    assert len(heatmap.texts) == len(TASKS) * 2
    assert [t.get_text() for t in heatmap.get_xticklabels()] == ["L0", "L1"]
