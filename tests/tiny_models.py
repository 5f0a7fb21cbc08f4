"""Tiny random Hugging Face models built in-process from a config (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

VOCAB = 64


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return BertModel(config, add_pooling_layer=False).eval()


def tiny_llama(seed: int = 0) -> LlamaModel:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, max_position_embeddings=64, pad_token_id=0,
    )
    return LlamaModel(config).eval()


def save_tiny(model: torch.nn.Module, directory: Path) -> str:
    model.save_pretrained(str(directory))
    return str(directory)


def random_batch(batch: int = 4, tokens: int = 7, num_tasks: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB, (batch, tokens), generator=gen)
    attention_mask = torch.ones(batch, tokens, dtype=torch.long)
    attention_mask[0, tokens - 2 :] = 0  # one padded example
    task_ids = torch.arange(batch) % num_tasks
    return {"input_ids": input_ids, "attention_mask": attention_mask, "task_ids": task_ids}
