"""MTL-LoRA (arXiv 2410.09437): a shared down-projection A, a task-specific r×r transform Λ_t and
n shared up-projections B^i mixed per task by softmax(w_t/τ):

    h_t = W x + b + (α/r) · Σ_i softmax(w_t/τ)_i · B^i · Λ_t · A · dropout(x)

Fused computation. With z = A x (one GEMM over all tokens), the update is
``[B^1 … B^n] · (p_t ⊗ Λ_t z)``: the mixing weights and the scaling are folded into one small
per-task matrix M_t = (α/r) · p_t ⊗ Λ_t of shape [n·r, r], so the rest is one batched r×(n·r)
product per example and one GEMM with the concatenated up-projections [out, n·r]. A and B are never
copied per example; only the tiny M_t (n·r² numbers) is gathered per example. Cost per token:
r·(in + n·out) + n·r² multiply-adds.
"""

from __future__ import annotations

import torch
from torch import nn

from models.adapter_layer import AdapterLayer, concat_up, kaiming_uniform_, linear_tokens
from models.config import LAMBDA_FORMS, MIXING_INITS


class MTLLoRALinear(AdapterLayer):
    """MTL-LoRA around a frozen ``nn.Linear``; ``layer(x, task_ids=LongTensor[batch])``.

    Trainable: ``lora_A`` [rank, in], ``lora_lambda`` [num_tasks, rank, rank] ("full") or
    [num_tasks, rank] ("diagonal"), ``lora_B`` [num_up, out, rank], ``lora_w`` [num_tasks, num_up].
    A fresh layer computes exactly ``base(x)`` (B starts at zero). ``mixing_init="uniform"`` starts
    every w_t at zero, so softmax(w_t/τ) = 1/n whatever τ; "kaiming" draws it at random.
    """

    #: The task-specific parameters (Λ_t and w_t), which training may give their own learning rate.
    task_parameters = ("lora_lambda", "lora_w")

    def __init__(
        self,
        base: nn.Linear,
        *,
        num_tasks: int,
        rank: int,
        num_up: int = 3,
        temperature: float = 0.1,
        alpha: float = 16.0,
        dropout: float = 0.0,
        lambda_form: str = "full",
        mixing_init: str = "kaiming",
    ) -> None:
        super().__init__(base, num_tasks=num_tasks, rank=rank, alpha=alpha, dropout=dropout)
        if lambda_form not in LAMBDA_FORMS:
            raise ValueError(f"lambda_form must be one of {', '.join(LAMBDA_FORMS)}, got {lambda_form!r}")
        if temperature <= 0 or num_up < 1:
            raise ValueError(f"need temperature > 0 and num_up >= 1, got {temperature} and {num_up}")
        if mixing_init not in MIXING_INITS:
            raise ValueError(f"mixing_init must be one of {', '.join(MIXING_INITS)}, got {mixing_init!r}")
        self.num_up = num_up
        self.temperature = temperature
        self.lambda_form = lambda_form
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(kaiming_uniform_(torch.empty(rank, self.in_features, **factory)))
        if lambda_form == "full":
            eye = torch.eye(rank, **factory).expand(num_tasks, rank, rank).clone()
            self.lora_lambda = nn.Parameter(eye)
        else:
            self.lora_lambda = nn.Parameter(torch.ones(num_tasks, rank, **factory))
        self.lora_B = nn.Parameter(torch.zeros(num_up, self.out_features, rank, **factory))
        w = torch.zeros(num_tasks, num_up, **factory)
        self.lora_w = nn.Parameter(kaiming_uniform_(w) if mixing_init == "kaiming" else w)

    def mixing_weights(self) -> torch.Tensor:
        """softmax(w_t/τ) per task, [num_tasks, num_up], computed in float32.

        torch.softmax subtracts the row maximum, so small τ and bf16/fp16 weights do not overflow.
        """
        return torch.softmax(self.lora_w.float() / self.temperature, dim=-1)

    def task_lambda(self) -> torch.Tensor:
        """Λ_t as full matrices, [num_tasks, rank, rank]."""
        if self.lambda_form == "full":
            return self.lora_lambda
        return torch.diag_embed(self.lora_lambda)

    def task_mixers(self) -> torch.Tensor:
        """M_t = (α/r) · p_t ⊗ Λ_t, [num_tasks, num_up·rank, rank]; row i·r+j is (α/r)·p_ti·Λ_t[j]."""
        lam = self.task_lambda()
        p = self.mixing_weights().to(lam.dtype) * self.scaling
        return (p[:, :, None, None] * lam[:, None, :, :]).reshape(self.num_tasks, self.num_up * self.rank, self.rank)

    def down(self, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        z = linear_tokens(x, self.lora_A)  # [batch, tokens, r]: one GEMM over all tokens
        mixers = self.task_mixers().index_select(0, task_ids)  # [batch, n·r, r]
        return torch.bmm(z, mixers.transpose(1, 2))  # [batch, tokens, n·r]

    def up_weight(self) -> torch.Tensor:
        return concat_up(self.lora_B)

    def down_weight(self, task: int) -> torch.Tensor:
        return self.task_mixers()[task] @ self.lora_A

    def extra_repr(self) -> str:
        extra = f"num_up={self.num_up}, temperature={self.temperature}, lambda={self.lambda_form}"
        return f"{super().extra_repr()}, {extra}"
