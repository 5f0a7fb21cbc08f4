"""Column contracts of the data stage: the raw log schema and the prepared shard schema.

Prepare reads every raw column as a string first (so a malformed value becomes a quarantine reason
instead of a read failure), then casts to these canonical types.
"""

from __future__ import annotations

from pyspark.sql import types as T

# Raw log columns (shared/design.md) with their canonical types.
RAW_TYPES: dict[str, T.DataType] = {
    "event_date": T.DateType(),
    "market": T.StringType(),
    "vertical": T.StringType(),
    "query": T.StringType(),
    "ad_id": T.StringType(),
    "advertiser_id": T.StringType(),
    "ad_title": T.StringType(),
    "ad_description": T.StringType(),
    "display_url": T.StringType(),
    "impressions": T.LongType(),
    "clicks": T.LongType(),
    "position": T.DoubleType(),
    "label": T.IntegerType(),
    "label_source": T.StringType(),
}
RAW_COLUMNS: tuple[str, ...] = tuple(RAW_TYPES)

# Columns an input may omit entirely; they are read as null.
OPTIONAL_COLUMNS: frozenset[str] = frozenset(
    {"ad_description", "display_url", "position", "label", "label_source"}
)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c for c in RAW_COLUMNS if c not in OPTIONAL_COLUMNS)

# Text columns and the longest value prepare keeps of each (longer text is truncated, not dropped).
TEXT_LIMITS: dict[str, int] = {
    "query": 256,
    "ad_title": 200,
    "ad_description": 1000,
    "display_url": 200,
}

LABEL_SOURCES: tuple[str, ...] = ("human", "llm", "click")
MIN_GRADE, MAX_GRADE = 0, 4

# Synth writes event_date as an ISO string so that malformed dates can be represented.
SYNTH_SCHEMA = T.StructType(
    [
        T.StructField(name, T.StringType() if name == "event_date" else dtype, True)
        for name, dtype in RAW_TYPES.items()
    ]
)

# Every raw column as a string: how JSON Lines and CSV inputs are read.
RAW_STRING_SCHEMA = T.StructType([T.StructField(c, T.StringType(), True) for c in RAW_COLUMNS])

# Columns of a shard file (split and task are also the partition directories).
SHARD_COLUMNS: tuple[str, ...] = (
    "example_id",
    "task",
    "task_id",
    "query",
    "ad_id",
    "advertiser_id",
    "ad_title",
    "ad_description",
    "display_url",
    "market",
    "vertical",
    "label",
    "weight",
    "label_source",
    "grade",
    "impressions",
    "clicks",
    "position",
    "observations",
)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
