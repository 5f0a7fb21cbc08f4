from pyspark.sql import functions as F

from pipelines.data.synth import DIRT_KINDS, synth_logs


def test_same_seed_same_rows_regardless_of_partitioning(spark):
    a = synth_logs(spark, 3000, seed=7, partitions=1).drop("_relation").toPandas()
    b = synth_logs(spark, 3000, seed=7, partitions=5).drop("_relation").toPandas()
    assert a.equals(b)
    c = synth_logs(spark, 300, seed=8).toPandas()
    assert not a.head(300).equals(c)


def test_realism_imbalance_and_dirt(spark):
    df = synth_logs(spark, 40_000, seed=3, dirt=0.3).cache()
    clean = df.where(F.col("_dirt").isNull())
    segments = clean.groupBy("market", "vertical").count().collect()
    counts = sorted(r["count"] for r in segments)
    assert len({r["market"] for r in segments}) >= 5 and len({r["vertical"] for r in segments}) >= 6
    assert counts[-1] / counts[0] >= 20
    assert {r[0] for r in df.select("_dirt").distinct().collect()} - {None} == set(DIRT_KINDS)
    judged = df.where(F.col("label_source").isin("human", "llm")).count() / df.count()
    assert 0.25 < judged < 0.45
    assert df.where(F.col("clicks") > F.col("impressions")).count() > 0  # dirt, on purpose
    df.unpersist()


def test_segment_rules_make_the_same_pattern_differ(spark):
    df = synth_logs(spark, 60_000, seed=5, dirt=0.0)
    rate = {
        (r["_relation"], r["vertical"]): r["relevant"]
        for r in df.groupBy("_relation", "vertical")
        .agg(F.avg((F.col("_grade") >= 3).cast("double")).alias("relevant"))
        .collect()
    }
    # neighbours: nearby destination relevant in travel, neighbouring category not in retail
    assert rate[("neighbour", "travel")] > 0.5 > rate[("neighbour", "retail")]
    # competitor ads: acceptable in retail, not in finance
    assert rate[("competitor", "retail")] > 0.5 > rate[("competitor", "finance")]
    # shared core
    assert rate[("off_topic", "travel")] == 0 and rate[("exact", "finance")] > 0.85


def test_clicks_show_position_bias(spark):
    df = synth_logs(spark, 30_000, seed=2, dirt=0.0).where(F.col("_grade") >= 3)
    top = df.where(F.col("position") < 2).agg(F.sum("clicks") / F.sum("impressions")).first()[0]
    low = df.where(F.col("position") > 6).agg(F.sum("clicks") / F.sum("impressions")).first()[0]
    assert top > 2 * low
