import html
import random
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from features.text import (
    _BLANK,
    is_blank,
    nfkc_may_change,
    normalise_text,
    normalise_text_array,
    normalise_text_columns,
    rows_with,
)


def test_unicode_normalisation_decodes_entities_and_compatibility_forms():
    assert normalise_text("Marks &amp; Spencer") == "Marks & Spencer"
    assert normalise_text("cheap&nbsp;\ufb01ji") == "cheap fiji"
    assert normalise_text("Levi&#39;s") == "Levi's"
    assert normalise_text("\uff05 off") == "% off"
    assert normalise_text("plain ascii") == "plain ascii"
    assert normalise_text(None) is None


def test_whitespace_case_and_length():
    assert normalise_text(" a\u00a0\u200b b\t\nc ") == "a b c"
    assert normalise_text("\u00a0 \t") == ""
    assert normalise_text("WWW.Shop.COM", lowercase=True) == "www.shop.com"
    assert normalise_text("Cafe\u0301 Rome", limit=4) == "Caf\u00e9"  # composed, then characters not bytes


def test_spark_columns_equal_the_scalar_twin(spark):
    values = ["  CHEAP\u00a0\u00a0Flights&nbsp;to\tRome ", "Levi&#39;s \ufb01t", None, "", "x" * 30, "Ünï ©ode"]
    df = spark.createDataFrame([(v, v) for v in values], "query string, ad_title string")
    out = normalise_text_columns(df, {"query": 20, "ad_title": 12}, lowercase=("query",)).collect()
    assert [r.query for r in out] == [normalise_text(v, 20, lowercase=True) for v in values]
    assert [r.ad_title for r in out] == [normalise_text(v, 12) for v in values]


def test_text_columns_normalised_in_spark(spark):
    df = spark.createDataFrame(
        [("  CHEAP\u00a0\u00a0Flights&nbsp;to\tRome ", "Rome &amp; Florence " * 3, "WWW.X.COM")],
        "query string, ad_title string, display_url string",
    )
    out = normalise_text_columns(
        df, {"query": 50, "ad_title": 12, "display_url": 50}, lowercase=("query", "display_url")
    ).first()
    assert out.query == "cheap flights to rome"
    assert out.ad_title == "Rome & Floren"[:12]
    assert out.display_url == "www.x.com"


def test_blank_detection(spark):
    values = [None, "", "  \t", "&nbsp;", "\u00a0", "\u200b&#32;", "a", " a", "&amp;", "\u00e9", "\x00x"]
    df = spark.createDataFrame([(v,) for v in values], "t string")
    flags = [r[0] for r in df.select(is_blank(F.col("t"))).collect()]
    assert flags == [True, True, True, True, True, True, False, False, False, False, False]


def test_blank_fast_path_equals_the_regex(spark):
    """The first-character test only spares the regex: on random text starting with every kind of
    character, blank is exactly what the regex alone says."""
    pieces = [" ", "\t", "\x00", "\x1f", "!", "~", "\x7f", "\xa0", "\u200b", "\ufeff", "&", "&nbsp;",
              "&#32;", "&#x20;", "&amp;", "a", "Z", "0", "é", "\U0001f600"]
    rng = random.Random(1)
    values = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) for _ in range(3_000)]
    df = spark.createDataFrame([(v,) for v in values], "t string")
    got = df.select(is_blank(F.col("t")).alias("fast"), F.col("t").rlike(_BLANK).alias("regex")).collect()
    assert sum(r.regex for r in got) > 100  # blank values are among them
    assert [r.fast for r in got] == [r.regex for r in got]


PIECES = [" ", "  ", "\t", "\n", "\x0b", "\x0c", "\r", "\x00", "\x1f", "\x7f", "\x85", "\xa0", "\u1680",
          "\u2002", "\u200b", "\u2028", "\u2029", "\u202f", "\u3000", "\ufeff", "\xad", "\u180e",
          "a", "B", "é", "e\u0301", "\ufb01", "&amp;", "&nbsp;", "&#32;", "&", "£", "İ", "\U0001f600",
          "₹", "™", "…", "\u0301", "\u1100", "\u1161", "\uac00", "\u11a8", "\u0b47", "\u0b3e", "&#", "&x",
          "&AMP", "&lt", "#", "x", "\U000e0001", "\U00013430", "\u0378", "\uffff", "&amp;amp;", "\uff06amp;",
          "amp;"]


def random_values(seed: int, n: int = 20_000) -> list[str | None]:
    rng = random.Random(seed)
    return [*("".join(rng.choice(PIECES) for _ in range(rng.randint(0, 10))) for _ in range(n)), None]


def unescaped(value: str) -> str:
    while (fixed := unicodedata.normalize("NFKC", html.unescape(value))) != value:
        value = fixed
    return value


def plain_definition(values: list[str | None], limit: int) -> pa.Array:
    """One pass: NFKC of unescaped text until neither changes it, every run of [\\s\\p{Z}\\p{Cc}\\p{Cf}]
    to one space, trimmed, lower case, cut at ``limit`` and trimmed again; repeated until no value
    changes."""
    out = pa.array(values, pa.string())
    for _ in range(4):
        fixed = [None if v is None else unescaped(v) for v in out.to_pylist()]
        spaced = pc.replace_substring_regex(pa.array(fixed, pa.string()), r"[\s\p{Z}\p{Cc}\p{Cf}]+", " ")
        again = pc.utf8_trim(pc.utf8_slice_codeunits(pc.utf8_lower(pc.utf8_trim(spaced, " ")), 0, limit), " ")
        if again.equals(out):
            break
        out = again
    return out


def test_fast_paths_equal_the_plain_definition():
    """Only changed whitespace runs are matched and only changed values are written back; on random
    text with every kind of space, control, format, entity and composable character the result is the
    plain definition's."""
    values = random_values(0)
    expected = plain_definition(values, 6)
    assert normalise_text_array(pa.array(values, pa.string()), limit=6, lowercase=True).equals(expected)
    # the same from a slice (an array with an offset into its buffers) and as large strings
    sliced = normalise_text_array(pa.array([None, "x", *values], pa.string()).slice(2), limit=6, lowercase=True)
    assert sliced.equals(expected)
    large = normalise_text_array(pa.array(values, pa.large_string()), limit=6, lowercase=True)
    assert large.equals(expected.cast(pa.large_string()))


def test_normalising_normalised_text_changes_nothing():
    """Scorers normalise what prepare normalised already: a second pass must be a no-op, also for
    double-escaped entities, a full-width '＆' that NFKC turns into an entity, and cuts that end on a
    space."""
    assert normalise_text("Rome &amp;amp; Florence") == "Rome & Florence"
    assert normalise_text("\uff06amp; more") == "& more"
    assert normalise_text("ab cd", limit=3) == "ab"
    for limit in (3, 6, 40):
        once = normalise_text_array(pa.array(random_values(limit), pa.string()), limit=limit, lowercase=True)
        assert normalise_text_array(once, limit=limit, lowercase=True).equals(once)
        kept_case = normalise_text_array(pa.array(random_values(limit + 1), pa.string()), limit=limit)
        assert normalise_text_array(kept_case, limit=limit).equals(kept_case)


def test_nfkc_may_change_covers_every_character_that_can_compose():
    """A value is sent to NFKC only if a character in it may change: every character NFKC changes
    alone, and every second character of a canonical pair that composes, must say so."""
    for code_point in range(0x110000):
        if 0xD800 <= code_point <= 0xDFFF:
            continue
        ch = chr(code_point)
        if unicodedata.normalize("NFKC", ch) != ch:
            assert nfkc_may_change(code_point), hex(code_point)
        decomposition = unicodedata.decomposition(ch)
        if decomposition and not decomposition.startswith("<") and len(decomposition.split()) == 2:
            assert nfkc_may_change(int(decomposition.split()[1], 16)), decomposition
    assert not nfkc_may_change(ord("£")) and not nfkc_may_change(ord("é")) and not nfkc_may_change(ord("₹"))


def test_rows_with_maps_bytes_to_values():
    values = pa.array(["ab", None, "", "a£", "x&", "b", "&#1", "c\u2003d"], pa.string())
    ampersand = rows_with(values, lambda data: data == ord("&"), lambda cp: False)
    assert ampersand.tolist() == [False, False, False, False, True, False, True, False]
    non_ascii = rows_with(values.slice(3), lambda data: data < 0, lambda cp: cp in (0xA3, 0x2003))
    assert non_ascii.tolist() == [True, False, False, False, True]
    assert not rows_with(pa.array([None, None], pa.string()), lambda data: data >= 0, lambda cp: True).any()
