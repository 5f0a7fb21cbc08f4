"""The cross-encoder input: (query, ad text) pairs tokenised with the backbone's fast tokenizer, and
dynamic padding of a batch to its own longest example.

Training, evaluation and every scorer build the text through these functions, so a model sees at
serving time exactly what it saw in training (including the optional segment prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

AD_FIELD_SEPARATOR = " | "


def query_text(query: str, market: str | None = None, vertical: str | None = None, *, segment: bool = False) -> str:
    """The first segment; with ``segment`` the market and vertical are written in front ("[en-GB travel] q")."""
    query = query or ""
    if segment:
        return f"[{market or '?'} {vertical or '?'}] {query}"
    return query


def ad_text(title: str, description: str | None, display_url: str | None) -> str:
    """Title, description and display URL of an ad as one second segment (empty parts skipped)."""
    return AD_FIELD_SEPARATOR.join(p for p in (title, description, display_url) if p)


def pair_texts(columns: dict[str, Sequence[Any]], *, segment: bool = False) -> tuple[list[str], list[str]]:
    """(first, second) texts of every row of a column mapping (pandas DataFrame or dict of lists)."""
    queries, titles = columns["query"], columns["ad_title"]
    n = len(queries)
    descriptions = columns["ad_description"] if "ad_description" in columns else [None] * n
    urls = columns["display_url"] if "display_url" in columns else [None] * n
    markets = columns["market"] if segment else [None] * n
    verticals = columns["vertical"] if segment else [None] * n
    first = [query_text(q, m, v, segment=segment) for q, m, v in zip(queries, markets, verticals, strict=True)]
    second = [ad_text(t, d, u) for t, d, u in zip(titles, descriptions, urls, strict=True)]
    return first, second


class PairEncoder:
    """Tokenises pairs once (no padding) and pads any subset of them to its longest member."""

    def __init__(self, tokenizer: Any, max_length: int, *, segment: bool = False) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.segment = segment
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, columns: dict[str, Sequence[Any]]) -> dict[str, list[list[int]]]:
        first, second = pair_texts(columns, segment=self.segment)
        enc = self.tokenizer(first, second, truncation="longest_first", max_length=self.max_length,
                             padding=False, return_attention_mask=False)
        out = {"input_ids": enc["input_ids"]}
        if "token_type_ids" in enc:
            out["token_type_ids"] = enc["token_type_ids"]
        return out

    def pad(self, encoded: dict[str, list[list[int]]], rows: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask (and token_type_ids) of ``rows`` padded on the right to their longest."""
        ids = encoded["input_ids"]
        rows = range(len(ids)) if rows is None else rows
        lengths = [len(ids[i]) for i in rows]
        width = max(lengths, default=0)
        input_ids = np.full((len(lengths), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(lengths), width), dtype=np.int64)
        types = np.zeros((len(lengths), width), dtype=np.int64) if "token_type_ids" in encoded else None
        for k, (i, n) in enumerate(zip(rows, lengths, strict=True)):
            input_ids[k, :n] = ids[i]
            mask[k, :n] = 1
            if types is not None:
                types[k, :n] = encoded["token_type_ids"][i]
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if types is not None:
            batch["token_type_ids"] = torch.from_numpy(types)
        return batch

    def __call__(self, columns: dict[str, Sequence[Any]]) -> dict[str, torch.Tensor]:
        return self.pad(self.encode(columns))


def length_buckets(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Split row indices into batches of similar length (sorted, chunked, batch order shuffled), so little
    compute goes to padding while every batch stays a random mix of tasks."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
