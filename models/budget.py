"""Trainable-parameter budgets: how many parameters a method trains on a backbone, and the rank at
which a method matches another's budget (methods are compared at matched budgets)."""

from __future__ import annotations

import copy

from torch import nn

from models.config import AdapterConfig
from models.relevance import RelevanceModel, RelevanceModelConfig


def trainable_parameters(backbone: nn.Module, adapter: AdapterConfig, *, head: str = "per_task") -> int:
    """Adapter and head parameters of ``adapter`` on (a copy of) ``backbone``."""
    config = RelevanceModelConfig(adapter=adapter, head=head)
    return RelevanceModel(copy.deepcopy(backbone), config).trainable_parameter_count()


def matched_rank(backbone: nn.Module, method: str, target: int, *, num_tasks: int, num_up: int = 3,
                 head: str = "per_task") -> tuple[int, int]:
    """The rank of ``method`` whose trainable count is nearest ``target``, and that count. Adapter
    parameters grow linearly with the rank, so two ranks give the slope and the neighbours decide."""

    def count(rank: int) -> int:
        adapter = AdapterConfig(method=method, num_tasks=num_tasks, rank=rank, num_up=num_up)
        return trainable_parameters(backbone, adapter, head=head)

    one, two = count(1), count(2)
    guess = max(1, round(1 + (target - one) / max(1, two - one)))
    counts = {r: count(r) for r in {max(1, guess - 1), guess, guess + 1}}
    rank = min(counts, key=lambda r: (abs(counts[r] - target), r))
    return rank, counts[rank]
