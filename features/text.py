"""Text normalisation shared by prepare and (later) scoring, so both see the same strings.

The Python-only steps (unicode NFKC, HTML entities) run in one vectorised pandas UDF over all text
columns at once; everything Spark can do natively (whitespace, case, truncation) stays in the JVM.
"""

from __future__ import annotations

import html
import re
import unicodedata

import pandas as pd
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


def normalise_unicode_series(values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalise_unicode`: only the values that need it go through Python."""
    text = values.astype(object)
    mask = text.notna() & text.astype(str).str.contains(_NEEDS_PYTHON.pattern, regex=True)
    if not mask.any():
        return values
    out = text.copy()
    out[mask] = [normalise_unicode(v) for v in text[mask]]
    return out


def _unicode_udf(columns: tuple[str, ...]):
    schema = T.StructType([T.StructField(c, T.StringType(), True) for c in columns])

    @F.pandas_udf(schema)
    def normalise(*series: pd.Series) -> pd.DataFrame:
        return pd.DataFrame(
            {name: normalise_unicode_series(s) for name, s in zip(columns, series, strict=True)}
        )

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
    unicode_fixed = _unicode_udf(columns)(*[F.col(c) for c in columns])
    df = df.withColumn("_text", unicode_fixed)
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
