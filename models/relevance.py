"""RelevanceModel: frozen backbone + multi-task adapters + pooling + relevance head -> one logit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.backbone import DEFAULT_BACKBONE, fingerprint, load_backbone
from models.config import AdapterConfig
from models.heads import HEADS, POOLINGS, make_head, pool
from models.injection import MultiTaskModel

# Model types whose representation of the whole input is at the last token.
DECODER_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gpt2", "gpt_neox", "phi3"})


@dataclass
class RelevanceModelConfig:
    """What a relevance model is made of; stored in the artifact so it can be rebuilt exactly."""

    backbone: str = DEFAULT_BACKBONE
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    backbone_layers: int | None = None  # the backbone's first N transformer blocks only; None = all
    head: str = "shared"
    pooling: str = "auto"
    head_dropout: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.adapter, dict):
            self.adapter = AdapterConfig.from_dict(self.adapter)
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout!r}")
        if self.backbone_layers is not None and (isinstance(self.backbone_layers, bool)
                                                 or not isinstance(self.backbone_layers, int)
                                                 or self.backbone_layers < 1):
            raise ValueError(f"backbone_layers must be a positive integer or null, got {self.backbone_layers!r}")
        if self.pooling not in (*POOLINGS, "auto"):
            raise ValueError(f"pooling must be one of auto, {', '.join(POOLINGS)}, got {self.pooling!r}")

    @property
    def num_tasks(self) -> int:
        return self.adapter.num_tasks

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelevanceModelConfig:
        return cls(**data)


def default_pooling(backbone: nn.Module) -> str:
    model_type = getattr(getattr(backbone, "config", None), "model_type", None)
    return "last" if model_type in DECODER_MODEL_TYPES else "mean"



def trained_names(module: nn.Module) -> set[str]:
    """Names of the parameters that train (adapters and heads), as ``module`` names them: a data
    parallel wrapper's names carry its prefix."""
    return {name for name, p in module.named_parameters() if p.requires_grad}


class RelevanceModel(nn.Module):
    """``model(input_ids, attention_mask, task_ids)`` -> relevance logits [batch].

    Only adapter and head parameters are trainable (everything for ``method="full"``).
    """

    def __init__(self, backbone: nn.Module, config: RelevanceModelConfig) -> None:
        super().__init__()
        blocks = getattr(backbone.config, "num_hidden_layers", None)
        if config.backbone_layers is not None and blocks != config.backbone_layers:
            raise ValueError(f"the backbone has {blocks} blocks, the config says backbone_layers "
                             f"{config.backbone_layers}: load it with load_backbone(..., layers=)")
        self.config = config
        self.base_fingerprint = fingerprint(backbone)
        self.encoder = MultiTaskModel(backbone, config.adapter)
        self.pooling = default_pooling(backbone) if config.pooling == "auto" else config.pooling
        hidden = backbone.config.hidden_size
        self.head = make_head(config.head, hidden, config.num_tasks, config.head_dropout)

    @classmethod
    def from_config(cls, config: RelevanceModelConfig) -> RelevanceModel:
        return cls(load_backbone(config.backbone, layers=config.backbone_layers), config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        task_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs, task_ids=task_ids).last_hidden_state
        pooled = pool(hidden, attention_mask, self.pooling)
        return self.head(pooled.to(self.head_dtype), task_ids)

    @property
    def head_dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every trained tensor (adapters and heads; the whole model for ``full``), by name."""
        names = trained_names(self)
        return {name: t for name, t in self.state_dict().items() if name in names}

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def merge(self, task: int) -> None:
        self.encoder.merge(task)

    def unmerge(self) -> None:
        self.encoder.unmerge()
