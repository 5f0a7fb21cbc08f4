"""Text normalisation shared by prepare and scoring, so both see the same strings.

It all runs inside one vectorised Arrow UDF over all text columns at once: whitespace runs to one
space (RE2), lower case and bounded length in Arrow's C++ kernels; HTML entities and unicode NFKC in
Python, only for the values that contain an '&' or a non-ASCII character. Measured on 1M rows,
the same whitespace/case/length steps as Spark column functions (Java regex per value) cost four
times what the whole Arrow UDF costs, so they moved into it. Within the UDF, the whitespace regex
matches only runs that change and Python writes back only values that change: on the four text
columns of 4M synthetic rows (10k-row batches) that took the UDF's Python time from 27 s to 12 s.
"""

from __future__ import annotations

import html
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

# Whitespace including unicode separators, control and format characters (RE2 and Java alike).
_SPACE = r"\s\p{Z}\p{Cc}\p{Cf}"
# The runs of _SPACE that normalisation changes: two or more characters, or one that is not a plain
# space. Matching only these, not every single space between words, made the replace 3-7x faster
# on ad text (on 4M synthetic rows; no change on URLs, which have no spaces).
_SPACE_TO_FIX = rf"[{_SPACE}]{{2,}}|[\t\n\f\r\p{{Cc}}\p{{Cf}}]|[^ \PZ]"


def normalise_unicode_array(values: pa.Array) -> pa.Array:
    """HTML entities decoded, then NFKC (so '&nbsp;' and 'ﬁ' become plain text).

    Only values with a non-ASCII character or an '&' (a possible entity) reach Python, and only the
    ones that change are written back: building Arrow strings from Python costs more than the
    normalisation itself.

    NFKC is Python's unicodedata: pyarrow 25's utf8_normalize returns decomposed text for NFC and
    NFKC ('é' as 'e' + U+0301; apache/arrow#51225, fixed upstream by #51237), which would split
    every accented word in two.
    """
    if len(values) == 0:
        return values
    needs = pc.fill_null(pc.or_(pc.invert(pc.string_is_ascii(values)), pc.match_substring(values, "&")), False)
    if not pc.any(needs).as_py():
        return values
    before = pc.filter(values, needs).to_pylist()
    after = [unicodedata.normalize("NFKC", html.unescape(v) if "&" in v else v) for v in before]
    changed = np.fromiter((a != b for a, b in zip(after, before, strict=True)), dtype=bool, count=len(before))
    if not changed.any():
        return values
    mask = np.zeros(len(values), dtype=bool)
    mask[np.flatnonzero(needs.to_numpy(zero_copy_only=False))[changed]] = True
    fixed = pa.array([a for a, c in zip(after, changed, strict=True) if c], type=values.type)
    return pc.replace_with_mask(values, pa.array(mask), fixed)


def normalise_text_array(values: pa.Array, limit: int | None = None, lowercase: bool = False) -> pa.Array:
    """One text column normalised: entities + NFKC, runs of whitespace to one space, trimmed,
    lower-cased when ``lowercase``, at most ``limit`` characters. Nulls stay null."""
    values = pc.utf8_trim(pc.replace_substring_regex(normalise_unicode_array(values), _SPACE_TO_FIX, " "), " ")
    if lowercase:
        values = pc.utf8_lower(values)
    if limit is None or (pc.max(pc.binary_length(values)).as_py() or 0) <= limit:
        return values  # no value has more bytes than the limit, so none has more characters
    return pc.utf8_slice_codeunits(values, 0, limit)


def normalise_text(value: str | None, limit: int | None = None, lowercase: bool = False) -> str | None:
    """:func:`normalise_text_array` for one value (the scoring path's twin of prepare's)."""
    return normalise_text_array(pa.array([value], type=pa.string()), limit, lowercase)[0].as_py()


def _normalise_udf(limits: dict[str, int], lowercase: tuple[str, ...]):
    columns = list(limits)
    schema = T.StructType([T.StructField(c, T.StringType(), True) for c in columns])

    @F.arrow_udf(schema)
    def normalise(*arrays: pa.Array) -> pa.Array:
        fixed = [normalise_text_array(a, limits[c], c in lowercase) for c, a in zip(columns, arrays, strict=True)]
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


_BLANK = rf"(?i)^([{_SPACE}]|&nbsp;|&#0*32;|&#x0*20;)*$"


def is_blank(column: Column) -> Column:
    """True for null, empty, whitespace-only or entity-only-whitespace text (checked in the JVM).

    A value whose first character is printable ASCII other than '&' cannot be blank, and nearly
    every value starts so: only the others reach the Java regex. The first character is tested by
    comparing the whole value with one-character strings (bytewise, it stops at the first byte), as
    taking it out with substring copies it. Prepare checks five columns of every row this way, in
    both passes; warm JVM, 4M rows, the quarantine pass took 2.5-3.2 s against 3.2-4.1 s with the
    regex on every value.
    """
    plain = (column >= F.lit("!")) & (column < F.lit("\x7f")) & ((column < F.lit("&")) | (column >= F.lit("'")))
    return column.isNull() | (~plain & column.rlike(_BLANK))
