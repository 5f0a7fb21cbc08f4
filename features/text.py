"""Text normalisation shared by prepare and scoring, so both see the same strings.

Everything runs on Arrow arrays: whitespace runs to one space (RE2), lower case and bounded length in
Arrow's C++ kernels; HTML entities and unicode NFKC in Python, only for the values that may change.
Prepare applies it inside one vectorised Arrow UDF over all text columns (cheaper than the same steps
as Spark column functions); scorers call :func:`normalise_text_array` or :func:`normalise_pair_columns`
directly. Which values may change is decided from the bytes of the whole array at once
(:func:`rows_with`), so the regex and the Python loop see only those. Spark is imported only inside
the functions that build Spark columns: scorers and the MLflow pyfunc import this module without it.
"""

from __future__ import annotations

import functools
import html
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import LOWERCASED_TEXT, TEXT_LIMITS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Whitespace including unicode separators, control and format characters (RE2 and Java alike).
_SPACE = r"\s\p{Z}\p{Cc}\p{Cf}"
# Passes until a value stops changing: more would mean a normalisation that cycles.
MAX_PASSES = 4
# The runs of _SPACE that normalisation changes: two or more characters, or one that is not a plain
# space. The single spaces between words are left unmatched: matching them too is the costly case.
_SPACE_TO_FIX = rf"[{_SPACE}]{{2,}}|[\t\n\f\r\p{{Cc}}\p{{Cf}}]|[^ \PZ]"


def _utf8(values: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """The offsets (one per value, plus the end) and data bytes of a string array, without a copy;
    None when no value has a byte."""
    _, offsets_buffer, data_buffer = values.buffers()
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[values.offset : values.offset + len(values) + 1]
    if data_buffer is None or offsets[-1] == offsets[0]:
        return None
    return offsets, np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]


def _code_points(data: np.ndarray, leads: np.ndarray) -> np.ndarray:
    """The code points of the UTF-8 sequences starting at ``leads`` (positions of bytes >= 0xC0)."""
    first = data[leads].astype(np.int32)
    b1, b2, b3 = (data[np.minimum(leads + k, len(data) - 1)].astype(np.int32) & 0x3F for k in (1, 2, 3))
    two = ((first & 0x1F) << 6) | b1
    three = ((first & 0x0F) << 12) | (b1 << 6) | b2
    four = ((first & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3
    return np.where(first < 0xE0, two, np.where(first < 0xF0, three, four))


def rows_with(
    values: pa.Array, ascii_hit: Callable[[np.ndarray], np.ndarray], code_point_hit: Callable[[int], bool]
) -> np.ndarray:
    """Which values of a string array hold an ASCII byte for which ``ascii_hit`` (over the uint8 data)
    is true, or a non-ASCII character for which ``code_point_hit`` is.

    Vectorised over the array's data buffer and mapped to values through the offsets; each distinct
    non-ASCII character is tested once. Much cheaper than a per-value kernel or regex when few values
    hold such a character. A pair test in ``ascii_hit`` that joins a value's last byte with the next
    value's first can only add candidates. Nulls are never flagged.
    """
    flagged = np.zeros(len(values), dtype=bool)
    utf8 = _utf8(values) if values.null_count < len(values) else None
    if utf8 is None:
        return flagged
    offsets, data = utf8
    positions = np.flatnonzero(ascii_hit(data))
    leads = np.flatnonzero(data >= 0xC0)
    if len(leads):
        distinct, which = np.unique(_code_points(data, leads), return_inverse=True)
        hit = np.fromiter((code_point_hit(int(c)) for c in distinct), dtype=bool, count=len(distinct))
        positions = np.concatenate([positions, leads[hit[which]]])
    flagged[np.searchsorted(offsets, positions + offsets[0], side="right") - 1] = True
    if values.null_count:
        flagged &= values.is_valid().to_numpy(zero_copy_only=False)
    return flagged


def _entity_start(data: np.ndarray) -> np.ndarray:
    """'&' followed by '#' or an ASCII letter: where html.unescape may find a character reference."""
    hit = np.zeros(len(data), dtype=bool)
    after = data[1:] | 0x20  # ASCII letters to lower case
    hit[:-1] = (data[:-1] == ord("&")) & ((data[1:] == ord("#")) | ((after >= ord("a")) & (after <= ord("z"))))
    return hit


@functools.cache
def nfkc_may_change(code_point: int) -> bool:
    """A character NFKC changes alone, or that can combine with or reorder around its neighbours
    (a combining class, a mark, a Hangul jamo): a value without any of these is already NFKC."""
    try:
        ch = chr(code_point)
    except ValueError:
        return True  # not a character: let the per-value path see it
    return (
        unicodedata.normalize("NFKC", ch) != ch
        or unicodedata.combining(ch) != 0
        or unicodedata.category(ch).startswith("M")
        or 0x1100 <= code_point <= 0x11FF
    )


def _ascii_space_to_fix(data: np.ndarray) -> np.ndarray:
    """ASCII bytes in a match of :data:`_SPACE_TO_FIX`: controls and the first of two spaces."""
    hit = (data < 0x20) | (data == 0x7F)
    hit[:-1] |= (data[:-1] == 0x20) & (data[1:] == 0x20)
    return hit


@functools.cache
def may_be_space(code_point: int) -> bool:
    """A non-ASCII character in :data:`_SPACE`'s classes (separator, control, format), or unassigned
    in this Python's Unicode data (RE2's may be newer)."""
    try:
        return unicodedata.category(chr(code_point)) in {"Zs", "Zl", "Zp", "Cc", "Cf", "Cn"}
    except ValueError:
        return True


def unescape_nfkc(value: str) -> str:
    """html.unescape then NFKC, again until nothing changes: a double-escaped '&amp;amp;', or a
    full-width '＆' that NFKC turns into the '&' of an entity, ends as plain text too."""
    for _ in range(MAX_PASSES):
        fixed = unicodedata.normalize("NFKC", html.unescape(value) if "&" in value else value)
        if fixed == value:
            break
        value = fixed
    return value


def normalise_unicode_array(values: pa.Array) -> pa.Array:
    """HTML entities decoded, then NFKC (so '&nbsp;' and 'ﬁ' become plain text).

    Only values that may change reach Python: those with an '&' before '#' or a letter (a possible
    character reference) or a character :func:`nfkc_may_change` says yes to. Currency signs, accented
    letters and other characters NFKC keeps do not qualify. Only values that change are written back:
    building Arrow strings from Python costs more than the normalisation itself.

    NFKC is Python's unicodedata: pyarrow 25's utf8_normalize returns decomposed text for NFC and
    NFKC ('é' as 'e' + U+0301; apache/arrow#51225, fixed upstream by #51237), which would split
    every accented word in two.
    """
    if len(values) == 0:
        return values
    needs = rows_with(values, _entity_start, nfkc_may_change)
    if not needs.any():
        return values
    before = pc.filter(values, pa.array(needs)).to_pylist()
    after = [unescape_nfkc(v) for v in before]
    changed = np.fromiter((a != b for a, b in zip(after, before, strict=True)), dtype=bool, count=len(before))
    if not changed.any():
        return values
    mask = np.zeros(len(values), dtype=bool)
    mask[np.flatnonzero(needs)[changed]] = True
    fixed = pa.array([a for a, c in zip(after, changed, strict=True) if c], type=values.type)
    return pc.replace_with_mask(values, pa.array(mask), fixed)


def collapse_spaces_array(values: pa.Array) -> pa.Array:
    """Every run of whitespace, control and format characters to one space (not trimmed).

    The regex runs only on the values that can hold a run to change (:func:`rows_with`); on
    ad text nearly none can.
    """
    candidates = rows_with(values, _ascii_space_to_fix, may_be_space)
    if not candidates.any():
        return values
    mask = pa.array(candidates)
    fixed = pc.replace_substring_regex(pc.filter(values, mask), _SPACE_TO_FIX, " ")
    return pc.replace_with_mask(values, mask, fixed)


def _normalise_once(values: pa.Array, limit: int | None, lowercase: bool) -> pa.Array:
    values = pc.utf8_trim(collapse_spaces_array(normalise_unicode_array(values)), " ")
    if lowercase:
        values = pc.utf8_lower(values)
    if limit is None or (pc.max(pc.binary_length(values)).as_py() or 0) <= limit:
        return values  # no value has more bytes than the limit, so none has more characters
    return pc.utf8_trim(pc.utf8_slice_codeunits(values, 0, limit), " ")  # a cut may end on a space


def _changed(before: pa.Array, after: pa.Array) -> np.ndarray:
    return np.flatnonzero(pc.fill_null(pc.not_equal(before, after), False).to_numpy(zero_copy_only=False))


def normalise_text_array(values: pa.Array, limit: int | None = None, lowercase: bool = False) -> pa.Array:
    """One text column normalised: entities + NFKC, runs of whitespace to one space, trimmed,
    lower-cased when ``lowercase``, at most ``limit`` characters. Nulls stay null.

    Idempotent, so that a scorer may normalise text that prepare normalised already: the values a
    pass changes go through it again until none changes (lower case or a cut can leave what another
    step changes).
    """
    out = _normalise_once(values, limit, lowercase)
    rows = _changed(values, out)
    for _ in range(MAX_PASSES - 1):
        if not rows.size:
            break
        before = out.take(rows)
        after = _normalise_once(before, limit, lowercase)
        still = _changed(before, after)
        if not still.size:
            break
        mask = np.zeros(len(out), dtype=bool)
        mask[rows[still]] = True
        out = pc.replace_with_mask(out, pa.array(mask), after.take(still))
        rows = rows[still]
    return out


def normalise_pair_columns(columns: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """The text columns of query-ad pairs (those of :data:`features.schema.TEXT_LIMITS` present in
    ``columns``) normalised as prepare normalises them; the others as they are."""
    return {name: normalise_text_array(values, TEXT_LIMITS[name], name in LOWERCASED_TEXT)
            if name in TEXT_LIMITS else values for name, values in columns.items()}


def normalise_text(value: str | None, limit: int | None = None, lowercase: bool = False) -> str | None:
    """:func:`normalise_text_array` for one value (the scoring path's twin of prepare's)."""
    return normalise_text_array(pa.array([value], type=pa.string()), limit, lowercase)[0].as_py()


def _normalise_udf(limits: dict[str, int], lowercase: tuple[str, ...]):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

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
    from pyspark.sql import functions as F

    df = df.withColumn("_text", _normalise_udf(limits, lowercase)(*[F.col(c) for c in limits]))
    return df.withColumns({c: F.col(f"_text.{c}") for c in limits}).drop("_text")


_BLANK = rf"(?i)^([{_SPACE}]|&nbsp;|&#0*32;|&#x0*20;)*$"


def is_blank(column: Column) -> Column:
    """True for null, empty, whitespace-only or entity-only-whitespace text (checked in the JVM).

    A value whose first character is printable ASCII other than '&' cannot be blank, and nearly
    every value starts so: only the others reach the Java regex. The first character is tested by
    comparing the whole value with one-character strings (bytewise, it stops at the first byte), as
    taking it out with substring copies it.
    """
    from pyspark.sql import functions as F

    plain = (column >= F.lit("!")) & (column < F.lit("\x7f")) & ((column < F.lit("&")) | (column >= F.lit("'")))
    return column.isNull() | (~plain & column.rlike(_BLANK))
