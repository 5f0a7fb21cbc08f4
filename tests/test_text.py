import pandas as pd
from pyspark.sql import functions as F

from features.text import is_blank, normalise_text_columns, normalise_unicode, normalise_unicode_series


def test_unicode_normalisation_decodes_entities_and_compatibility_forms():
    assert normalise_unicode("Marks &amp; Spencer") == "Marks & Spencer"
    assert normalise_unicode("cheap&nbsp;\ufb01ji") == "cheap fiji"
    assert normalise_unicode("Levi&#39;s") == "Levi's"
    assert normalise_unicode("plain ascii") == "plain ascii"
    assert normalise_unicode(None) is None


def test_series_version_matches_scalar_and_keeps_nulls():
    s = pd.Series(["a &amp; b", None, "x", "\uff05"])
    out = normalise_unicode_series(s)
    assert out.tolist()[0] == "a & b" and out[1] is None and out[2] == "x" and out[3] == "%"


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
    df = spark.createDataFrame([(None,), ("",), ("  \t",), ("&nbsp;",), ("\u00a0",), ("a",)], "t string")
    flags = [r[0] for r in df.select(is_blank(F.col("t"))).collect()]
    assert flags == [True, True, True, True, True, False]
