"""Batch-scoring candidates: their schema, and the checks every scoring engine applies to them.

One pure Arrow function (:func:`check_candidates`) decides, for a batch of candidate rows as read,
the normalised text (prepare's own normalisation), the task of each row (the task map stored in the
model) and, for a row that cannot be scored, the reason. The Spark engine runs it inside
``mapInArrow``, the local engine on its own batches: both reject the same rows for the same reasons.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import CORRUPT, LOCALE_PATTERN
from features.task_map import TaskMap, normalise_locale
from features.text import normalise_pair_columns

# Columns of the candidate schema; candidate_id, ad_description and display_url may be absent.
CANDIDATE_COLUMNS = ("candidate_id", "query", "ad_id", "ad_title", "ad_description", "display_url", "market",
                     "vertical")
REQUIRED_COLUMNS = ("query", "ad_id", "ad_title", "market", "vertical")
# Reasons in the order they are checked: a row gets the first that applies.
REASONS = ("malformed_record", "missing_query", "missing_ad_id", "no_ad_text", "invalid_market",
           "missing_vertical", "unmapped")
LOCALE = re.compile(LOCALE_PATTERN)
# A scored row, in order (docs/architecture.md, "Batch scoring output"): every engine writes this schema.
# source_version: the version whose parameters scored the row (a routed model's source, else the model's
# own); shadow_score and shadow_version: the --shadow model's score and version (null without one).
SCORE_SCHEMA = pa.schema([
    ("candidate_id", pa.string()), ("query", pa.string()), ("ad_id", pa.string()), ("market", pa.string()),
    ("vertical", pa.string()), ("task", pa.string()), ("score", pa.float64()), ("source_version", pa.string()),
    ("shadow_score", pa.float64()), ("model_name", pa.string()), ("model_version", pa.string()),
    ("model_digest", pa.string()), ("shadow_version", pa.string()), ("scored_at", pa.timestamp("us", tz="UTC")),
])
SCORE_COLUMNS = tuple(SCORE_SCHEMA.names)
# The same for every row of a run: the models that scored it, and when.
RUN_COLUMNS = ("model_name", "model_version", "model_digest", "shadow_version", "scored_at")
# What is computed per row: the checked candidate's columns and its score.
ROW_SCHEMA = pa.schema([f for f in SCORE_SCHEMA if f.name not in RUN_COLUMNS])


def as_read(table: pa.Table) -> pa.Table:
    """The candidate columns of ``table`` as strings (absent ones null), plus ``_corrupt_record``:
    the shape rejected rows are kept in."""
    columns = {}
    for name in (*CANDIDATE_COLUMNS, CORRUPT):
        if name in table.column_names:
            column = table[name]
            columns[name] = column if column.type == pa.string() else pc.cast(column, pa.string())
        else:
            columns[name] = pa.nulls(table.num_rows, pa.string())
    return pa.table(columns)


def candidate_ids(query: Sequence[str | None], ad_id: Sequence[str | None], market: Sequence[str | None]) -> list[str]:
    """A stable id of (normalised query, ad_id, market): 32 hex digits of sha256."""
    return [hashlib.sha256(f"{q}\x1f{a}\x1f{m}".encode()).hexdigest()[:32]
            for q, a, m in zip(query, ad_id, market, strict=True)]


def _mapped(values: pa.Array, function) -> list:
    """``function`` over the distinct values of ``values`` only (markets and verticals repeat)."""
    python = values.to_pylist()
    cache = {v: function(v) for v in set(python)}
    return [cache[v] for v in python]


def _empty(values: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.equal(pc.utf8_length(values), 0), True).to_numpy(zero_copy_only=False)


def check_candidates(table: pa.Table, task_map: TaskMap) -> pa.Table:
    """``table`` (candidate columns as read) -> normalised text, market and vertical, candidate_id
    (kept as given, else :func:`candidate_ids`), ``task_id`` and ``task`` (null when rejected) and
    ``reason`` (null when the row can be scored)."""
    rows = as_read(table)
    text = normalise_pair_columns({c: rows[c].combine_chunks() for c in ("query", "ad_title", "ad_description",
                                                                        "display_url")})
    ad_id = pc.utf8_trim_whitespace(rows["ad_id"].combine_chunks())
    market = pa.array(_mapped(rows["market"].combine_chunks(), lambda m: normalise_locale(m) if m else m),
                      pa.string())
    vertical = pc.utf8_lower(pc.utf8_trim_whitespace(rows["vertical"].combine_chunks()))
    pairs = list(zip(market.to_pylist(), vertical.to_pylist(), strict=True))
    routes = {p: task_map.task_for(*p) if p[0] and p[1] else None for p in set(pairs)}
    tasks = [routes[p] for p in pairs]

    n = rows.num_rows
    failed = {
        "malformed_record": rows[CORRUPT].combine_chunks().is_valid().to_numpy(zero_copy_only=False),
        "missing_query": _empty(text["query"]),
        "missing_ad_id": _empty(ad_id),
        "no_ad_text": _empty(text["ad_title"]) & _empty(text["ad_description"]),
        "invalid_market": np.array([not (m and LOCALE.fullmatch(m)) for m in market.to_pylist()], dtype=bool),
        "missing_vertical": _empty(vertical),
        "unmapped": np.array([t is None for t in tasks], dtype=bool),
    }
    reason = np.full(n, None, dtype=object)
    for name in reversed(REASONS):  # the first reason that applies wins
        reason[failed[name]] = name
    given = rows["candidate_id"].combine_chunks()
    ids = candidate_ids(text["query"].to_pylist(), ad_id.to_pylist(), market.to_pylist())
    candidate_id = pa.array([g if g is not None else i for g, i in zip(given.to_pylist(), ids, strict=True)],
                            pa.string())
    routed = [t if r is None else None for t, r in zip(tasks, reason, strict=True)]
    return pa.table({
        "candidate_id": candidate_id,
        "query": text["query"], "ad_id": ad_id, "ad_title": text["ad_title"],
        "ad_description": pc.fill_null(text["ad_description"], ""),
        "display_url": pc.fill_null(text["display_url"], ""),
        "market": market, "vertical": vertical,
        "task_id": pa.array([t.id if t else None for t in routed], pa.int32()),
        "task": pa.array([t.name if t else None for t in routed], pa.string()),
        "reason": pa.array(reason.tolist(), pa.string()),
    })


def rejected_rows(table: pa.Table, checked: pa.Table) -> pa.Table:
    """The rows of ``table`` that ``checked`` rejects, as read (strings), with their reason."""
    mask = checked["reason"].is_valid()
    return as_read(table).filter(mask).append_column("reason", checked["reason"].filter(mask))


def scored_rows(accepted: pa.Table, scores: Sequence[float], source_versions: Sequence[str | None],
                shadow_scores: Sequence[float | None] | None = None) -> pa.Table:
    """The accepted rows of :func:`check_candidates` with their scores, as :data:`ROW_SCHEMA`
    (``shadow_scores``: None without a shadow model, a null where the shadow could not score a row)."""
    computed = {"score": pa.array(scores, pa.float64()), "source_version": pa.array(source_versions, pa.string()),
                "shadow_score": pa.array(shadow_scores if shadow_scores is not None else [None] * accepted.num_rows,
                                         pa.float64(), from_pandas=True)}
    columns = [computed[f.name] if f.name in computed else accepted[f.name] for f in ROW_SCHEMA]
    return pa.Table.from_arrays(columns, schema=ROW_SCHEMA)


def with_model_columns(rows: pa.Table, model: dict[str, object]) -> pa.Table:
    """:func:`scored_rows` plus the run's constant :data:`RUN_COLUMNS`, as :data:`SCORE_SCHEMA`."""
    for name in RUN_COLUMNS:
        rows = rows.append_column(SCORE_SCHEMA.field(name), pa.array([model[name]] * rows.num_rows,
                                                                      SCORE_SCHEMA.field(name).type))
    return rows


def read_scored_rows(scores_dir, columns: Sequence[str]) -> pa.Table:
    """``columns`` of the scored rows under ``scores_dir`` (``<out>/scores`` of adsrel score), read with
    :data:`SCORE_SCHEMA`: an output without a scored row reads as an empty table."""
    import pyarrow.dataset as ds

    return ds.dataset(str(scores_dir), format="parquet", schema=SCORE_SCHEMA).to_table(columns=list(columns))
