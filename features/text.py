"""Text normalisation shared by prepare and (later) scoring, so both see the same strings.

The Python-only steps (unicode NFKC, HTML entities) run in one vectorised Arrow UDF over all text
columns at once; everything Spark can do natively (whitespace, case, truncation) stays in the JVM.
"""

from __future__ import annotations

import html
import re
import unicodedata

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

# A value needs the Python pass only if it has non-ASCII characters or an '&' (a possible entity).
_NEEDS_PYTHON = re.compile(r"[^\x00-\x7f]|&")
# Java regex: whitespace including unicode separators and control characters.
_JAVA_SPACE = r"[\s\p{Z}\p{Cc}\p{Cf}]+"


def normalise_unicode(value: str | None) -> str | None:
    """HTML entities decoded, then NFKC (so '&nbsp;' and 'ﬁ' become plain text)."""
    if value is None or not _NEEDS_PYTHON.search(value):
        return value
    return unicodedata.normalize("NFKC", html.unescape(value))


def normalise_unicode_array(values: pa.Array) -> pa.Array:
    """Vectorised :func:`normalise_unicode` on an Arrow string array: NFKC runs in Arrow's C++
    kernel; only the values with an '&' go through Python's html.unescape first."""
    if len(values) == 0 or not pc.any(pc.match_substring_regex(values, _NEEDS_PYTHON.pattern)).as_py():
        return values
    entities = pc.fill_null(pc.match_substring(values, "&"), False)
    if pc.any(entities).as_py():
        decoded = [html.unescape(v) for v in pc.filter(values, entities).to_pylist()]
        values = pc.replace_with_mask(values, entities, pa.array(decoded, type=values.type))
    return pc.utf8_normalize(values, form="NFKC")


def normalise_unicode_series(values: pd.Series) -> pd.Series:
    """pandas twin of :func:`normalise_unicode_array` (for callers that hold pandas data)."""
    out = normalise_unicode_array(pa.array(values, type=pa.string(), from_pandas=True))
    return pd.Series(out.to_pylist(), index=values.index, dtype=object)


def _unicode_udf(columns: tuple[str, ...]):
    schema = T.StructType([T.StructField(c, T.StringType(), True) for c in columns])

    @F.arrow_udf(schema)
    def normalise(*arrays: pa.Array) -> pa.Array:
        fixed = [normalise_unicode_array(a) for a in arrays]
        return pa.StructArray.from_arrays(fixed, names=list(columns))

    return normalise


def collapse_whitespace(column: Column) -> Column:
    """Runs of any whitespace become one space; leading and trailing whitespace goes."""
    return F.trim(F.regexp_replace(column, _JAVA_SPACE, " "))


def normalise_text_columns(
    df: DataFrame, limits: dict[str, int], lowercase: tuple[str, ...] = ()
) -> DataFrame:
    """Normalises the text columns named in ``limits``: NFKC + entities, whitespace, bounded length.

    Columns in ``lowercase`` are also lower-cased (queries and URLs, where case carries no meaning;
    ad copy keeps its case).
    """
    columns = tuple(limits)
    df = df.withColumn("_text", _unicode_udf(columns)(*[F.col(c) for c in columns]))
    cleaned = {}
    for name, limit in limits.items():
        value = collapse_whitespace(F.col(f"_text.{name}"))
        if name in lowercase:
            value = F.lower(value)
        cleaned[name] = F.substring(value, 1, limit)
    return df.withColumns(cleaned).drop("_text")


def is_blank(column: Column) -> Column:
    """True for null, empty, whitespace-only or entity-only-whitespace text (checked in the JVM)."""
    blank = r"(?i)^([\s\p{Z}\p{Cc}\p{Cf}]|&nbsp;|&#0*32;|&#x0*20;)*$"
    return column.isNull() | column.rlike(blank)
