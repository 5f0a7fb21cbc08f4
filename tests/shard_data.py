"""Tiny prepared shards written with pyarrow, in the exact layout of `adsrel prepare`, so the training
and evaluation stages can be tested in seconds without Spark.

The signal is learnable even by a tiny frozen random encoder (bag of words): an ad is relevant when its
title starts with buy/best/book, not when it starts with cheap/sale/deals/online. Task ``b`` (when
present) has the opposite rule, so tasks disagree on the same surface pattern.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.tiny_models import WORDS

SPLITS = ("train", "valid", "test")
NOUNS = WORDS[:34]
MODIFIERS = ("buy", "cheap", "best", "sale", "deals", "online", "book")
GOOD, BAD = ("buy", "best", "book"), ("cheap", "sale", "deals", "online")


def _rows(task: str, task_id: int, n: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for _ in range(n):
        a, b = rng.choice(NOUNS, 2, replace=False)
        query = f"{a} {b}" if rng.random() < 0.5 else f"{rng.choice(MODIFIERS)} {a}"
        relevant = rng.random() < 0.4
        shown = a if rng.random() < 0.5 else rng.choice([w for w in NOUNS if w not in (a, b)])
        modifier = rng.choice(GOOD if relevant else BAD)
        label = int(relevant) if task != "b" else 1 - int(relevant)
        example_id = hashlib.sha1(f"{task}|{query}|{shown}|{len(rows)}|{rng.random()}".encode()).hexdigest()[:16]
        rows.append({
            "example_id": example_id, "task_id": task_id, "query": query, "ad_id": example_id[:8],
            "advertiser_id": "adv1", "ad_title": f"{modifier} {shown}", "ad_description": f"{shown} online",
            "display_url": f"{shown}", "market": "en-US", "vertical": task, "label": label,
            "weight": 1.0, "label_source": "human", "grade": 3 if label else 0, "impressions": 10,
            "clicks": 1, "position": 1.0, "observations": 1, "rows": 1,
        })
    return rows


def write_shards(directory: Path, *, tasks: tuple[str, ...] = ("a", "b", "c"),
                 rows_per_task: tuple[int, ...] = (240, 160, 80), seed: int = 0,
                 split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Path:
    """Write shards/split=*/task=*/part-00000.parquet and manifest.json under ``directory``."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
    for task_id, (task, n) in enumerate(zip(tasks, rows_per_task, strict=True)):
        rows = _rows(task, task_id, n, rng)
        bounds = np.cumsum([int(round(f * n)) for f in split_fractions[:2]])
        for split, part in zip(SPLITS, np.split(np.array(rows, dtype=object), bounds), strict=True):
            part = list(part)
            if not part:
                continue
            out = directory / "shards" / f"split={split}" / f"task={task}"
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(part), out / "part-00000.parquet")
            counts[split][task] = {"rows": len(part), "positives": sum(r["label"] for r in part)}
    manifest = {
        "schema_version": 1,
        "input": {"paths": ["tests/shard_data.py"], "rows": sum(rows_per_task)},
        "accepted_rows": sum(rows_per_task),
        "quarantined_rows": 0,
        "quarantine": {},
        "tasks": [{"name": t, "id": i, "markets": ["*"], "verticals": [t]} for i, t in enumerate(tasks)],
        "unmapped": "quarantine",
        "counts": counts,
        "config": {"seed": seed},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return directory
