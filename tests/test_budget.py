"""Trainable-parameter budgets on a tiny BERT: counts follow the layer shapes, matched ranks are nearest."""

from models.budget import matched_rank, trainable_parameters
from models.config import AdapterConfig
from tests.tiny_models import tiny_bert


def test_lora_counts_grow_with_the_rank_as_the_layer_shapes_say():
    bert = tiny_bert()  # hidden 32, intermediate 48, 2 layers; adapted: q, k, v, attention out, intermediate, out
    per_rank = 2 * (4 * (32 + 32) + (32 + 48) + (48 + 32))  # r * (in + out) per adapted linear
    head = 3 * 32 + 3  # a per-task head of 3 tasks
    for rank in (1, 4):
        adapter = AdapterConfig(method="lora", num_tasks=3, rank=rank)
        assert trainable_parameters(bert, adapter) == rank * per_rank + head


def test_the_matched_rank_is_the_nearest_budget():
    bert = tiny_bert()
    target = trainable_parameters(bert, AdapterConfig(method="mtl_lora", num_tasks=3, rank=4, num_up=3))
    rank, count = matched_rank(bert, "lora", target, num_tasks=3)
    counts = {r: trainable_parameters(bert, AdapterConfig(method="lora", num_tasks=3, rank=r)) for r in range(1, 30)}
    assert count == counts[rank] and abs(count - target) == min(abs(c - target) for c in counts.values())
