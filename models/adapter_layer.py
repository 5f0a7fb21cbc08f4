"""AdapterLayer: what every adapter method shares around a frozen ``nn.Linear``.

A subclass knows only its math: its down-projection for a batch (:meth:`down`, task-dependent),
its up-projection as one matrix (:meth:`up_weight`) and the dense down map of one task
(:meth:`down_weight`, for merging). This base class owns the frozen base layer, input-shape
handling, task-id checks, the fused residual update and merge/unmerge.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class AdapterLayer(nn.Module):
    """A frozen linear layer plus a trainable update: ``h = W x + b + update(x, task)``."""

    #: Whether the update depends on the example's task (then ``task_ids`` is required).
    task_aware: bool = True

    def __init__(self, base: nn.Linear, *, num_tasks: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{type(self).__name__} wraps nn.Linear, got {type(base).__name__}")
        if num_tasks < 1 or rank < 1:
            raise ValueError(f"num_tasks and rank must be >= 1, got {num_tasks} and {rank}")
        base.requires_grad_(False)
        self.base = base
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.num_tasks = num_tasks
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Set while a task's update is folded into base.weight; the original weight is kept so that
        # unmerge() restores it bit for bit.
        self.merged_task: int | None = None
        self._unmerged_weight: torch.Tensor | None = None

    # --- what a method defines ---------------------------------------------------------------
    # Every method is "down-project to k activations (task-dependent, scaling included), then one
    # GEMM with an up matrix [out, k]"; the base class fuses that GEMM with the residual add.
    def down(self, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        """Activations entering the up-projection: x [batch, tokens, in] -> [batch, tokens, k]."""
        raise NotImplementedError

    def up_weight(self) -> torch.Tensor:
        """The up-projection as one [out, k] matrix."""
        raise NotImplementedError

    def down_weight(self, task: int) -> torch.Tensor:
        """The linear map of :meth:`down` for ``task`` as a dense [k, in] matrix."""
        raise NotImplementedError

    def delta_weight(self, task: int) -> torch.Tensor:
        """The dense update ΔW_t of shape [out, in] (scaling included) for ``task``."""
        return self.up_weight() @ self.down_weight(task)

    def add_update(self, result: torch.Tensor, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        """``result += update(x)`` for result [..., out] and x [batch, tokens, in], one fused addmm."""
        v = self.down(x, task_ids).to(result.dtype)
        up = self.up_weight().to(result.dtype)
        # In place: the base layer's output is not saved for its backward (its weight is frozen and
        # linear's backward needs only the weight), so autograd allows it and no copy is made.
        result.view(-1, self.out_features).addmm_(v.reshape(-1, v.shape[-1]), up.t())
        return result

    # --- shared machinery ----------------------------------------------------------------------
    @property
    def merged(self) -> bool:
        return self.merged_task is not None

    def check_task_ids(self, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor | None:
        if not self.task_aware:
            return task_ids
        if task_ids is None:
            raise ValueError(
                f"{type(self).__name__} needs task_ids (a LongTensor [batch]); pass task_ids= to the model"
            )
        if task_ids.dim() != 1 or task_ids.shape[0] != x.shape[0]:
            raise ValueError(
                f"task_ids must have shape [batch]=[{x.shape[0]}], got {list(task_ids.shape)}"
            )
        return task_ids

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        result = self.base(x)
        if self.merged:
            return result
        task_ids = self.check_task_ids(x, task_ids)
        x3 = self.dropout(x).reshape(x.shape[0], -1, self.in_features)
        return self.add_update(result, x3, task_ids)

    @torch.no_grad()
    def merge(self, task: int = 0) -> None:
        """Fold ``task``'s update into the base weight (single-segment serving)."""
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be in [0, {self.num_tasks}), got {task}")
        if self.merged:
            self.unmerge()
        weight = self.base.weight
        self._unmerged_weight = weight.detach().clone()
        weight.add_(self.delta_weight(task).to(weight.dtype))
        self.merged_task = task

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the base weight exactly as it was before :meth:`merge`."""
        if not self.merged:
            return
        self.base.weight.copy_(self._unmerged_weight)
        self._unmerged_weight = None
        self.merged_task = None

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, tasks={self.num_tasks}"


def kaiming_uniform_(tensor: torch.Tensor) -> torch.Tensor:
    """nn.Linear's default initialisation (kaiming-uniform with a=√5), as PEFT uses for LoRA A."""
    return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))


def concat_up(lora_b: torch.Tensor) -> torch.Tensor:
    """[n, out, r] up-projections as one [out, n·r] matrix, column block i being B^i."""
    n, out, r = lora_b.shape
    return lora_b.permute(1, 0, 2).reshape(out, n * r)


def linear_tokens(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` for x of shape [batch, tokens, k], in the weight's dtype."""
    return F.linear(x.to(weight.dtype), weight)
