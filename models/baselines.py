"""The baselines MTL-LoRA is compared with, behind the same AdapterLayer interface.

- :class:`LoRALinear`: one LoRA shared by all tasks (Hu et al., 2021).
- :class:`TaskLoRALinear`: an independent LoRA per task.
- :class:`MultiLoRALinear`: n parallel LoRAs summed with shared learned scales (MultiLoRA,
  Wang et al., 2023).
- :class:`MoELoRALinear`: n LoRA experts mixed per task by a task-conditioned softmax gate (MOELoRA,
  Liu et al., 2023).

Each initialises B to zero, so a fresh adapter leaves the model unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from models.adapter_layer import AdapterLayer, concat_up, kaiming_uniform_, linear_tokens


def _down_weights(num: int, rank: int, in_features: int, factory: dict) -> nn.Parameter:
    """``num`` stacked A matrices [num, rank, in], each kaiming-uniform like nn.Linear."""
    a = torch.empty(num, rank, in_features, **factory)
    for i in range(num):
        kaiming_uniform_(a[i])
    return nn.Parameter(a)


class LoRALinear(AdapterLayer):
    """One shared LoRA: ``(α/r) B A x``. Ignores the task."""

    task_aware = False

    def __init__(
        self, base: nn.Linear, *, num_tasks: int, rank: int, alpha: float = 16.0, dropout: float = 0.0
    ) -> None:
        super().__init__(base, num_tasks=num_tasks, rank=rank, alpha=alpha, dropout=dropout)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(kaiming_uniform_(torch.empty(rank, self.in_features, **factory)))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))

    def down(self, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        return linear_tokens(x, self.lora_A * self.scaling)

    def up_weight(self) -> torch.Tensor:
        return self.lora_B

    def down_weight(self, task: int) -> torch.Tensor:
        return self.lora_A * self.scaling


class TaskLoRALinear(AdapterLayer):
    """An independent LoRA per task: ``(α/r) B_t A_t x``.

    The reference for "no sharing": each example's A_t and B_t are gathered (a per-example copy),
    which is fine for a baseline and keeps the code obvious.
    """

    def __init__(
        self, base: nn.Linear, *, num_tasks: int, rank: int, alpha: float = 16.0, dropout: float = 0.0
    ) -> None:
        super().__init__(base, num_tasks=num_tasks, rank=rank, alpha=alpha, dropout=dropout)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = _down_weights(num_tasks, rank, self.in_features, factory)
        self.lora_B = nn.Parameter(torch.zeros(num_tasks, self.out_features, rank, **factory))

    def add_update(self, result: torch.Tensor, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        a = self.lora_A.index_select(0, task_ids)  # [batch, r, in]
        b = self.lora_B.index_select(0, task_ids)  # [batch, out, r]
        z = torch.bmm(x.to(a.dtype), a.transpose(1, 2))
        update = torch.bmm(z, b.transpose(1, 2)) * self.scaling
        return result + update.reshape(result.shape).to(result.dtype)

    def delta_weight(self, task: int) -> torch.Tensor:
        return (self.lora_B[task] @ self.lora_A[task]) * self.scaling


class ParallelLoRAs(AdapterLayer):
    """n LoRAs side by side (``lora_A`` [n, r, in], ``lora_B`` [n, out, r]); subclasses say how they mix."""

    def __init__(
        self, base: nn.Linear, *, num_tasks: int, rank: int, num_up: int = 3, alpha: float = 16.0, dropout: float = 0.0
    ) -> None:
        super().__init__(base, num_tasks=num_tasks, rank=rank, alpha=alpha, dropout=dropout)
        self.factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.num_up = num_up
        self.lora_A = _down_weights(num_up, rank, self.in_features, self.factory)
        self.lora_B = nn.Parameter(torch.zeros(num_up, self.out_features, rank, **self.factory))

    def stacked_down(self) -> torch.Tensor:
        """The n down-projections as one [n·r, in] matrix."""
        return self.lora_A.reshape(self.num_up * self.rank, self.in_features)

    def up_weight(self) -> torch.Tensor:
        return concat_up(self.lora_B)


class MultiLoRALinear(ParallelLoRAs):
    """n parallel LoRAs summed with shared learned scales: ``(α/r) Σ_i s_i B_i A_i x``. Ignores the task."""

    task_aware = False

    def __init__(self, base: nn.Linear, **kwargs) -> None:
        super().__init__(base, **kwargs)
        self.lora_scales = nn.Parameter(torch.ones(self.num_up, **self.factory))

    def down_weight(self, task: int = 0) -> torch.Tensor:
        scales = (self.lora_scales * self.scaling).repeat_interleave(self.rank)
        return scales[:, None] * self.stacked_down()

    def down(self, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        return linear_tokens(x, self.down_weight())


class MoELoRALinear(ParallelLoRAs):
    """n LoRA experts mixed per task by a softmax gate: ``(α/r) Σ_i g_ti B_i A_i x``, g_t = softmax(gate_t).

    The gate logits start at zero (uniform mixing) and are learned per task and layer.
    """

    def __init__(self, base: nn.Linear, **kwargs) -> None:
        super().__init__(base, **kwargs)
        self.lora_gate = nn.Parameter(torch.zeros(self.num_tasks, self.num_up, **self.factory))

    def expert_weights(self) -> torch.Tensor:
        """g_t per task, [num_tasks, num_up], in float32."""
        return torch.softmax(self.lora_gate.float(), dim=-1)

    def _gate_per_activation(self) -> torch.Tensor:
        """(α/r)·g_t repeated over each expert's rank: [num_tasks, num_up·rank]."""
        gates = self.expert_weights().to(self.lora_A.dtype) * self.scaling
        return gates.repeat_interleave(self.rank, dim=1)

    def down(self, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        z = linear_tokens(x, self.stacked_down())
        return z * self._gate_per_activation().index_select(0, task_ids)[:, None, :]

    def down_weight(self, task: int) -> torch.Tensor:
        gate = self._gate_per_activation()[task]
        return gate[:, None] * self.stacked_down()
