"""`adsrel demo` for now: a short MTL-LoRA training smoke on a few hundred synthetic query-ad pairs
with the default backbone, printing per-task loss before and after. Later stages replace it with
the full pipeline (synth -> prepare -> train -> evaluate -> promote -> score)."""

from __future__ import annotations

import random
import sys
import time

import torch
from torch.nn import functional as F

from models.backbone import DEFAULT_BACKBONE, load_backbone, load_tokenizer
from models.config import AdapterConfig
from models.relevance import RelevanceModel, RelevanceModelConfig

TOPICS = {
    "retail": [("running shoes", "trail sneakers"), ("coffee maker", "espresso machine"), ("laptop bag", "backpack")],
    "travel": [("paris hotel", "lyon hotel"), ("rome flights", "milan flights"), ("lisbon tours", "porto tours")],
}
TASKS = ["us-retail", "gb-retail", "us-travel", "gb-travel"]


def synthetic_pairs(n: int, seed: int = 0) -> list[tuple[str, str, int, int]]:
    """(query, ad, task_id, label). A shared core (exact topic match is relevant, another vertical's
    topic is not) plus a segment rule: a *neighbouring* item counts in travel, not in retail."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        task = i % len(TASKS)
        vertical = TASKS[task].split("-")[1]
        item, neighbour = rng.choice(TOPICS[vertical])
        kind = rng.choice(["match", "neighbour", "other"])
        if kind == "match":
            ad, label = f"buy {item} today", 1
        elif kind == "neighbour":
            ad, label = f"great deals on {neighbour}", int(vertical == "travel")
        else:
            other = "travel" if vertical == "retail" else "retail"
            ad, label = f"cheap {rng.choice(TOPICS[other])[0]}", 0
        pairs.append((f"{item} {rng.choice(['near me', 'sale', 'best', ''])}".strip(), ad, task, label))
    return pairs


def per_task_loss(model: RelevanceModel, batch: dict, labels: torch.Tensor) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        losses = F.binary_cross_entropy_with_logits(model(**batch), labels, reduction="none")
    model.train()
    return {name: losses[batch["task_ids"] == t].mean().item() for t, name in enumerate(TASKS)}


def run_demo(steps: int = 40, batch_size: int = 16, seed: int = 0) -> int:
    torch.manual_seed(seed)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    log(f"demo: MTL-LoRA smoke on {DEFAULT_BACKBONE}, {len(TASKS)} tasks, {steps} steps")
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    config = RelevanceModelConfig(adapter=AdapterConfig(num_tasks=len(TASKS), rank=8), head="per_task")
    model = RelevanceModel(load_backbone(DEFAULT_BACKBONE), config)
    pairs = synthetic_pairs(320, seed)

    def encode(rows: list[tuple[str, str, int, int]]) -> tuple[dict, torch.Tensor]:
        enc = tokenizer([r[0] for r in rows], [r[1] for r in rows], padding=True, truncation=True,
                        max_length=48, return_tensors="pt")
        batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                 "token_type_ids": enc.get("token_type_ids"), "task_ids": torch.tensor([r[2] for r in rows])}
        return batch, torch.tensor([float(r[3]) for r in rows])

    held_out, held_labels = encode(synthetic_pairs(64, seed + 1))
    before = per_task_loss(model, held_out, held_labels)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    rng = random.Random(seed)
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        batch, labels = encode(rng.sample(pairs, batch_size))
        loss = F.binary_cross_entropy_with_logits(model(**batch), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == steps:
            log(f"step {step}/{steps} train loss {loss.item():.4f} ({time.perf_counter() - start:.1f}s)")
    after = per_task_loss(model, held_out, held_labels)
    print(f"{'task':<12}{'loss before':>12}{'loss after':>12}")
    for name in TASKS:
        print(f"{name:<12}{before[name]:>12.4f}{after[name]:>12.4f}")
    print(f"trainable parameters: {model.trainable_parameter_count():,}")
    return 0
