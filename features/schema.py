"""Column contracts of the data stage: the raw log schema, the prepared shard schema and the
candidate schema of batch scoring.

Types are Spark SQL type names (what ``Column.cast`` takes and ``DataFrame.dtypes`` reports), so this
module needs no Spark: scorers and the MLflow pyfunc import it too. Prepare reads a raw column as a
string when it lacks its canonical type (a malformed value becomes a quarantine reason, not a read
failure), then casts.
"""

from __future__ import annotations

# Raw log columns (docs/architecture.md) with their canonical types.
RAW_TYPES: dict[str, str] = {
    "event_date": "date",
    "market": "string",
    "vertical": "string",
    "query": "string",
    "ad_id": "string",
    "advertiser_id": "string",
    "ad_title": "string",
    "ad_description": "string",
    "display_url": "string",
    "impressions": "bigint",
    "clicks": "bigint",
    "position": "double",
    "label": "int",
    "label_source": "string",
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

# Text columns whose case carries no meaning (queries, URLs): lower-cased; ad copy keeps its case.
LOWERCASED_TEXT: tuple[str, ...] = ("query", "display_url")

LABEL_SOURCES: tuple[str, ...] = ("human", "llm", "click")
MIN_GRADE, MAX_GRADE = 0, 4

# Synth writes event_date as an ISO string so that malformed dates can be represented.
SYNTH_TYPES: dict[str, str] = {**RAW_TYPES, "event_date": "string"}

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

# Where a JSON Lines line that did not parse keeps its text, in raw logs and candidates alike.
CORRUPT = "_corrupt_record"
# A well-formed market after normalisation: language lower case, region upper case (en-US).
LOCALE_PATTERN = "[a-z]{2,3}-[A-Z]{2}"
