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


# Words of the tiny tokenizer's vocabulary (tests/shard_data.py builds its queries and ads from them).
WORDS = (
    "shoes boots sneakers socks jacket coat shirt dress hat bag watch phone laptop tablet camera "
    "paris rome london berlin madrid lisbon hotel flights tours cruise car rental loan card bank "
    "insurance course degree clinic doctor dental buy cheap best sale deals near me online book"
).split()
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tiny_tokenizer(directory: Path):
    """A word-level BERT fast tokenizer over WORDS (unknown words become [UNK]), saved in ``directory``."""
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokens = [*SPECIAL, *WORDS, *"abcdefghijklmnopqrstuvwxyz0123456789|.-"]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def tiny_backbone_dir(directory: Path, seed: int = 0) -> str:
    """A tiny random BERT and its tokenizer in ``directory``: usable wherever a backbone reference goes."""
    directory = Path(directory)
    tokenizer = tiny_tokenizer(directory)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=128, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(str(directory))
    return str(directory)


def tiny_decoder_dir(directory: Path, family: str = "llama", seed: int = 0) -> str:
    """A tiny random decoder (``llama`` or ``qwen2``) and the word-level tokenizer in ``directory``."""
    from transformers import Qwen2Config, Qwen2Model

    directory = Path(directory)
    tokenizer = tiny_tokenizer(directory)
    torch.manual_seed(seed)
    config_class, model_class = {"llama": (LlamaConfig, LlamaModel), "qwen2": (Qwen2Config, Qwen2Model)}[family]
    config = config_class(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=48, max_position_embeddings=128,
                          pad_token_id=tokenizer.pad_token_id)
    model_class(config).save_pretrained(str(directory))
    return str(directory)


def tiny_artifact(directory: Path, task_names, *, method: str = "mtl_lora", seed: int = 0, noise: float = 0.0,
                  markets=("*",), unmapped: str = "quarantine") -> Path:
    """A saved (untrained) relevance model artifact on a tiny backbone, with tokenizer and task map
    (task ``n`` takes vertical ``n`` in ``markets``). ``noise`` > 0 adds that much Gaussian noise to
    every trained tensor: the adapters then change the scores (a fresh adapter's B is zero), per task."""
    from models.artifact import save_model
    from models.backbone import load_tokenizer
    from models.config import AdapterConfig
    from models.relevance import RelevanceModel, RelevanceModelConfig

    directory = Path(directory)
    backbone = tiny_backbone_dir(directory.parent / f"{directory.name}-backbone", seed=seed)
    torch.manual_seed(seed)
    config = RelevanceModelConfig(
        backbone=backbone, adapter=AdapterConfig(method=method, num_tasks=len(task_names), rank=4), head="per_task"
    )
    model = RelevanceModel.from_config(config)
    if noise:
        with torch.no_grad():
            for parameter in model.trainable_state_dict().values():
                parameter.add_(noise * torch.randn_like(parameter))
    tasks = [{"name": n, "id": i, "markets": list(markets), "verticals": [n]} for i, n in enumerate(task_names)]
    return save_model(model, directory, tokenizer=load_tokenizer(backbone), tasks=tasks, unmapped=unmapped,
                      max_length=64, segment_in_text=False)
