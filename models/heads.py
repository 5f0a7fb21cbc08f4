"""Pooling of token states into one vector per example, and the relevance heads on top of it."""

from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("mean", "cls", "last")
HEADS = ("shared", "per_task")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """[batch, tokens, hidden] -> [batch, hidden].

    ``mean`` averages non-padding tokens (how sentence-transformers encoders such as MiniLM were
    trained), ``cls`` takes the first token, ``last`` the last non-padding token (decoders, which
    only see the whole input there; works for left or right padding).
    """
    if how == "mean":
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (positions * attention_mask.long()).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {how!r}")


class SharedHead(nn.Module):
    """One linear relevance head for every task."""

    def __init__(self, hidden_size: int, num_tasks: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, 1)

    def forward(self, pooled: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.dropout(pooled)).squeeze(-1)

    def for_task(self, task: int) -> dict[str, torch.Tensor]:
        """This task's head as a plain linear layer's weight [1, hidden] and bias [1]."""
        return {"weight": self.linear.weight.detach(), "bias": self.linear.bias.detach()}


class PerTaskHead(nn.Module):
    """One linear relevance head per task, applied by each example's task id."""

    def __init__(self, hidden_size: int, num_tasks: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        shared_init = nn.Linear(hidden_size, 1)
        self.weight = nn.Parameter(shared_init.weight.detach().repeat(num_tasks, 1))
        self.bias = nn.Parameter(shared_init.bias.detach().repeat(num_tasks))

    def forward(self, pooled: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        if task_ids is None:
            raise ValueError("a per-task head needs task_ids")
        weight = self.weight.index_select(0, task_ids)
        return (self.dropout(pooled) * weight).sum(-1) + self.bias.index_select(0, task_ids)

    def for_task(self, task: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[task : task + 1].detach(), "bias": self.bias[task : task + 1].detach()}


def make_head(kind: str, hidden_size: int, num_tasks: int, dropout: float = 0.1) -> nn.Module:
    if kind == "shared":
        return SharedHead(hidden_size, num_tasks, dropout)
    if kind == "per_task":
        return PerTaskHead(hidden_size, num_tasks, dropout)
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {kind!r}")
