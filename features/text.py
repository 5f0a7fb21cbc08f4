"""Text normalisation shared by prepare and scoring, so both see the same strings.

It all runs inside one vectorised Arrow UDF over all text columns at once: whitespace runs to one
space (RE2), lower case and bounded length in Arrow's C++ kernels; HTML entities and unicode NFKC in
Python, only for the values that contain an '&' or a non-ASCII character. Measured on 1M rows,
the same whitespace/case/length steps as Spark column functions (Java regex per value) cost four
times what the whole Arrow UDF costs, so they moved into it.
"""

from __future__ import annotations

import html
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

# A value needs the unicode pass only if it has non-ASCII characters or an '&' (a possible entity).
_NEEDS_UNICODE = r"[^\x00-\x7f]|&"
# Whitespace including unicode separators, control and format characters (RE2 and Java alike).
_SPACE_RUN = r"[\s\p{Z}\p{Cc}\p{Cf}]+"


def normalise_unicode_array(values: pa.Array) -> pa.Array:
    """HTML entities decoded, then NFKC (so '&nbsp;' and 'ﬁ' become plain text); ASCII values
    without '&' are returned as they are, without a Python call.

    NFKC is Python's unicodedata: pyarrow 25's utf8_normalize returns decomposed text for NFC and
    NFKC ('é' as 'e' + U+0301; apache/arrow#51225, fixed upstream by #51237), which would split
    every accented word in two.
    """
    if len(values) == 0:
        return values
    needs = pc.fill_null(pc.match_substring_regex(values, _NEEDS_UNICODE), False)
    if not pc.any(needs).as_py():
        return values
    fixed = [unicodedata.normalize("NFKC", html.unescape(v)) for v in pc.filter(values, needs).to_pylist()]
    return pc.replace_with_mask(values, needs, pa.array(fixed, type=values.type))


def normalise_text_array(values: pa.Array, limit: int | None = None, lowercase: bool = False) -> pa.Array:
    """One text column normalised: entities + NFKC, runs of whitespace to one space, trimmed,
    lower-cased when ``lowercase``, at most ``limit`` characters. Nulls stay null."""
    values = pc.utf8_trim(pc.replace_substring_regex(normalise_unicode_array(values), _SPACE_RUN, " "), " ")
    if lowercase:
        values = pc.utf8_lower(values)
    return values if limit is None else pc.utf8_slice_codeunits(values, 0, limit)


def normalise_text(value: str | None, limit: int | None = None, lowercase: bool = False) -> str | None:
    """:func:`normalise_text_array` for one value (the scoring path's twin of prepare's)."""
    return normalise_text_array(pa.array([value], type=pa.string()), limit, lowercase)[0].as_py()


def _normalise_udf(limits: dict[str, int], lowercase: tuple[str, ...]):
    columns = list(limits)
    schema = T.StructType([T.StructField(c, T.StringType(), True) for c in columns])

    @F.arrow_udf(schema)
    def normalise(*arrays: pa.Array) -> pa.Array:
        fixed = [normalise_text_array(a, limits[c], c in lowercase) for c, a in zip(columns, arrays)]
        return pa.StructArray.from_arrays(fixed, names=columns)

    return normalise


def normalise_text_columns(
    df: DataFrame, limits: dict[str, int], lowercase: tuple[str, ...] = ()
) -> DataFrame:
    """Normalises the text columns named in ``limits`` with :func:`normalise_text_array`.

    Columns in ``lowercase`` are also lower-cased (queries and URLs, where case carries no meaning;
    ad copy keeps its case).
    """
    df = df.withColumn("_text", _normalise_udf(limits, lowercase)(*[F.col(c) for c in limits]))
    return df.withColumns({c: F.col(f"_text.{c}") for c in limits}).drop("_text")


def is_blank(column: Column) -> Column:
    """True for null, empty, whitespace-only or entity-only-whitespace text (checked in the JVM)."""
    blank = r"(?i)^([\s\p{Z}\p{Cc}\p{Cf}]|&nbsp;|&#0*32;|&#x0*20;)*$"
    return column.isNull() | column.rlike(blank)
