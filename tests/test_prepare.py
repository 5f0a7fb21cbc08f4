import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from features.errors import UserError
from features.shards import manifest_digest
from features.task_map import load_task_map, locale_column, parse_task_map
from pipelines.data.prepare import (
    PrepareConfig,
    aggregate_examples,
    deduplicate_days,
    derive_labels,
    example_id_column,
    examples,
    read_raw,
    run_prepare,
    split_column,
    typed_accepted,
    with_reason,
    with_segment,
)
from pipelines.data.synth import synth_logs, write_logs

RAW = (
    "event_date string, market string, vertical string, query string, ad_id string, "
    "advertiser_id string, ad_title string, ad_description string, display_url string, "
    "impressions string, clicks string, position string, label string, label_source string, "
    "_corrupt_record string"
)
TASKS = parse_task_map({"tasks": [{"name": "retail", "verticals": ["retail"]}]})


def raw_row(**overrides):
    row = {
        "event_date": "2026-01-02", "market": "en-US", "vertical": "retail", "query": "shoes",
        "ad_id": "a1", "advertiser_id": "v1", "ad_title": "Shoes", "ad_description": "",
        "display_url": "x.com", "impressions": "10", "clicks": "1", "position": "1.5",
        "label": "3", "label_source": "human", "_corrupt_record": None,
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({}, None),
        ({"event_date": "2026-13-45"}, "bad_date"),
        ({"query": " \t"}, "missing_query"),
        ({"ad_title": None}, "missing_ad_title"),
        ({"market": "unknown"}, "invalid_market"),
        ({"market": "EN-us"}, None),
        ({"market": "en-CA"}, None),
        ({"market": "en-US\n"}, "invalid_market"),
        ({"impressions": "-3"}, "bad_impressions"),
        ({"impressions": "lots"}, "bad_impressions"),
        ({"clicks": "11"}, "clicks_exceed_impressions"),
        ({"position": "0.5"}, "bad_position"),
        ({"position": None}, None),
        ({"label": "7"}, "label_out_of_range"),
        ({"label": None, "label_source": None}, None),
        ({"label_source": "crowd"}, "bad_label_source"),
        ({"vertical": "travel"}, "unmapped"),
        ({"_corrupt_record": "{oops"}, "malformed_record"),
    ],
)
def test_validation_reasons(spark, overrides, reason):
    df = spark.createDataFrame([raw_row(**overrides)], RAW)
    assert with_reason(df, TASKS).first()["reason"] == reason


def test_a_market_the_map_names_must_still_be_a_locale(spark):
    task_map = parse_task_map({"tasks": [{"name": "g", "markets": ["global", "en-US"], "verticals": ["*"]}]})
    df = spark.createDataFrame([raw_row(market="global"), raw_row(market="en-US")], RAW)
    assert [r["reason"] for r in with_reason(df, task_map).collect()] == ["invalid_market", None]


def test_segment_shortcut_changes_nothing(spark):
    """Markets and verticals written as the map writes them, well-formed markets it does not name
    and label sources spelt as the schema spells them skip the normalisation; every value, written
    so or not, comes out as the full normalisation makes it."""
    task_map = parse_task_map({"tasks": [{"name": "a", "markets": ["en-US", "EN_gb"],
                                          "verticals": ["retail", "Travel"]}]})
    values = [("en-US", "retail", "human"), ("en-GB", "travel", "llm"), ("EN_us", " Retail ", " Human"),
              (" en-gb", "TRAVEL", "CLICK"), ("fr-FR", "health", "click"), ("fr_fr", "x", "x"),
              (None, None, None), ("en-US ", "retail\t", "llm\n"), ("", "", ""), ("en-CA\n", "a", "a")]
    df = spark.createDataFrame(values, "market string, vertical string, label_source string")
    shortcut = with_segment(df, task_map).select("_market", "_vertical", "_label_source").collect()
    full = df.select(locale_column(F.col("market")), F.lower(F.trim("vertical")), F.lower(F.trim("label_source")))
    assert shortcut == full.collect()
    assert shortcut[2] == ("en-US", "retail", "human") and shortcut[5][0] == "fr-FR"


def test_dedup_then_aggregate_and_labels(spark):
    rows = [
        raw_row(),
        raw_row(),  # same day: a logging duplicate
        raw_row(event_date="2026-01-03", impressions="30", clicks="3", position="3", label=None,
                label_source=None),
        raw_row(query="boots", label=None, label_source=None, impressions="100", clicks="10",
                position="2"),
        raw_row(query="socks", label=None, label_source=None, impressions="5", clicks="5"),
    ]
    df = with_reason(spark.createDataFrame(rows, RAW), TASKS)
    examples = deduplicate_days(typed_accepted(df))
    assert examples.count() == 4
    agg = aggregate_examples(examples)
    labelled = {r["query"]: r for r in derive_labels(agg, PrepareConfig()).collect()}
    shoes = labelled["shoes"]
    assert (shoes.rows, shoes.observations, shoes.impressions, shoes.clicks) == (3, 2, 40, 4)
    assert shoes.position == pytest.approx((1.5 * 10 + 3 * 30) / 40)
    assert (shoes.label, shoes.label_source, shoes.grade, shoes.weight) == (1, "human", 3.0, 1.0)
    boots = labelled["boots"]  # debiased CTR 0.1 * 2 = 0.2 >= 0.12
    assert (boots.label, boots.label_source) == (1, "click")
    socks = labelled["socks"]  # too few impressions for a click label
    assert socks.label is None and socks.label_source is None
    strict = {r["query"]: r for r in derive_labels(agg, PrepareConfig(click_labels=False)).collect()}
    assert strict["boots"].label is None


def test_examples_shuffle_once_and_sort_once_on_the_key_hash(spark):
    df = with_reason(spark.createDataFrame([raw_row(), raw_row(query="boots")], RAW), TASKS)
    plan = examples(df, PrepareConfig())._jdf.queryExecution().executedPlan().toString()
    steps = [line.strip("+-: ") for line in plan.splitlines()]
    exchanges = [s for s in steps if s.startswith("Exchange")]
    sorts = [s for s in steps if s.startswith("Sort ")]
    assert len(exchanges) == 1 and "_key_hash" in exchanges[0]
    assert len(sorts) == 1 and sorts[0].startswith("Sort [_key_hash")
    assert sum(s.startswith("SortAggregate") for s in steps) == 2


def test_split_is_deterministic_and_by_query(spark):
    df = spark.range(5000).select(F.concat(F.lit("q"), (F.col("id") % 1000).cast("string")).alias("query"))
    with_split = df.withColumn("split", split_column(F.col("query"), (0.8, 0.1, 0.1), "s"))
    per_query = with_split.groupBy("query").agg(F.countDistinct("split").alias("n"))
    assert per_query.where(F.col("n") > 1).count() == 0
    shares = {r["split"]: r["count"] / 5000 for r in with_split.groupBy("split").count().collect()}
    assert abs(shares["train"] - 0.8) < 0.06
    again = df.withColumn("split", split_column(F.col("query"), (0.8, 0.1, 0.1), "s"))
    assert with_split.exceptAll(again).count() == 0


def test_example_id_is_32_hex_digits_of_two_salted_key_hashes(spark):
    """Padding only the short halves gives the id of the plain definition: each half the salted
    xxhash64 of the key as 16 hex digits, leading zeros kept (1 hash in 16 needs them)."""
    df = spark.range(2000).select(
        F.concat(F.lit("q"), F.col("id").cast("string")).alias("query"),
        (F.col("id") % 7).cast("string").alias("ad_id"),
        F.lit("en-US").alias("market"),
    )
    salts = ("example-id-a", "example-id-b")
    hashes = [F.xxhash64(F.lit(s), "query", "ad_id", "market").alias(s) for s in salts]
    rows = df.select(example_id_column().alias("id"), *hashes).collect()
    expected = ["".join(f"{r[s] & (2**64 - 1):016x}" for s in salts) for r in rows]
    assert [r.id for r in rows] == expected
    assert sum(r.id.startswith("0") or r.id[16] == "0" for r in rows) > 100  # short halves are among them


@pytest.fixture(scope="module")
def dirty_logs(spark, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("logs") / "raw")
    write_logs(synth_logs(spark, 20_000, seed=11, dirt=0.3), path)
    return path


def test_whole_job_reconciles_and_never_leaks(spark, dirty_logs, tmp_path):
    out = tmp_path / "prepared"
    manifest = run_prepare(spark, [dirty_logs], str(out), load_task_map("configs/tasks.yaml"), PrepareConfig())
    assert manifest["input"]["rows"] == 20_000
    assert manifest["accepted_rows"] + manifest["quarantined_rows"] == 20_000
    assert sum(manifest["quarantine"].values()) == manifest["quarantined_rows"]
    assert {"bad_date", "missing_query", "missing_ad_title", "invalid_market", "bad_impressions",
            "clicks_exceed_impressions", "label_out_of_range"} <= set(manifest["quarantine"])
    assert manifest["examples"]["duplicate_rows_removed"] > 0
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["counts"] == manifest["counts"]

    quarantine = spark.read.parquet(str(out / "quarantine"))
    assert quarantine.count() == manifest["quarantined_rows"]
    shards = spark.read.parquet(str(out / "shards"))
    assert shards.count() == manifest["examples"]["written"]
    assert shards.agg(F.sum("rows")).first()[0] + manifest["examples"]["unlabelled_rows"] == manifest[
        "accepted_rows"
    ]
    assert shards.groupBy("query").agg(F.countDistinct("split").alias("n")).where("n > 1").count() == 0
    assert shards.groupBy("example_id").count().where("count > 1").count() == 0
    assert shards.where(~F.col("label").isin(0, 1)).count() == 0
    assert shards.where(F.col("query") != F.lower(F.trim(F.col("query")))).count() == 0
    assert shards.where(F.col("query").contains("&nbsp;") | F.col("ad_title").contains("&amp;")).count() == 0
    assert shards.where(F.length("ad_description") > 1000).count() == 0
    counted = sum(c["rows"] for split in manifest["counts"].values() for c in split.values())
    assert counted == manifest["examples"]["written"]
    part = next((out / "shards").glob("split=train/task=us-retail/*.parquet"))
    assert "example_id" in pq.read_schema(part).names


def test_one_shard_file_per_core_not_per_shuffle_partition(spark, dirty_logs, tmp_path):
    settings = {"spark.sql.shuffle.partitions": "8", "spark.sql.adaptive.coalescePartitions.enabled": "false"}
    saved = {k: spark.conf.get(k) for k in settings}
    try:
        for k, v in settings.items():
            spark.conf.set(k, v)
        run_prepare(spark, [dirty_logs], str(tmp_path), load_task_map("configs/tasks.yaml"), PrepareConfig())
    finally:
        for k, v in saved.items():
            spark.conf.set(k, v)
    shards = list((tmp_path / "shards").glob("split=*/task=*"))
    assert shards
    assert max(len(list(d.glob("*.parquet"))) for d in shards) <= spark.sparkContext.defaultParallelism


def test_rerun_replaces_output_and_same_input_gives_same_shards(spark, dirty_logs, tmp_path):
    out = tmp_path / "prepared"
    tm = load_task_map("configs/tasks.yaml")
    first = run_prepare(spark, [dirty_logs], str(out), tm, PrepareConfig())
    digest_first = manifest_digest(out)
    a = spark.read.parquet(str(out / "shards")).select("example_id", "split", "label").toPandas()
    second = run_prepare(spark, [dirty_logs], str(out), tm, PrepareConfig())
    b = spark.read.parquet(str(out / "shards")).select("example_id", "split", "label").toPandas()
    assert first["counts"] == second["counts"]
    assert manifest_digest(out) == digest_first
    key = ["example_id"]
    assert a.sort_values(key).reset_index(drop=True).equals(b.sort_values(key).reset_index(drop=True))


def test_manifest_digest_is_the_data_not_how_long_prepare_took(tmp_path):
    manifest = {"schema_version": 1, "counts": {"train": {"a": {"rows": 3}}}, "seconds": 12.5,
                "spark": {"version": "4.3.0", "master": "local[2]"}}
    digests = []
    for change in ({}, {"seconds": 99.1, "spark": {"version": "4.3.0", "master": "yarn"}},
                   {"counts": {"train": {"a": {"rows": 4}}}}):
        (tmp_path / "manifest.json").write_text(json.dumps({**manifest, **change}, indent=2))
        digests.append(manifest_digest(tmp_path))
    assert digests[0] == digests[1] != digests[2]


def test_a_failed_run_leaves_the_earlier_output_byte_for_byte(spark, dirty_logs, tmp_path):
    out = tmp_path / "prepared"
    run_prepare(spark, [dirty_logs], str(out), TASKS, PrepareConfig())
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert out / "manifest.json" in before
    lacking = tmp_path / "lacking"
    spark.read.parquet(dirty_logs).drop("market").limit(10).write.parquet(str(lacking))
    with pytest.raises(UserError, match="lacks required columns: market"):
        run_prepare(spark, [dirty_logs, str(lacking)], str(out), TASKS, PrepareConfig())
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_csv_and_json_inputs_and_task_by(spark, tmp_path):
    df = synth_logs(spark, 2000, seed=4, dirt=0.2)
    write_logs(df, str(tmp_path / "csv"), "csv")
    write_logs(df, str(tmp_path / "json"), "json")
    raw = read_raw(spark, [str(tmp_path / "csv"), str(tmp_path / "json")])
    assert raw.count() == 4000
    manifest = run_prepare(spark, [str(tmp_path / "json")], str(tmp_path / "out"), None,
                           PrepareConfig(), task_by="vertical")
    assert {t["name"] for t in manifest["tasks"]} == {
        "retail", "travel", "finance", "automotive", "health", "education"}
    assert manifest["accepted_rows"] + manifest["quarantined_rows"] == 2000


def test_typed_parquet_columns_are_validated_without_a_string_round_trip(spark, tmp_path):
    rows = [raw_row(), raw_row(position=None), raw_row(label="7"), raw_row(impressions="-3"),
            raw_row(clicks="11")]
    strings = spark.createDataFrame(rows, RAW).drop("_corrupt_record")
    numbers = {"impressions": "bigint", "clicks": "bigint", "position": "double", "label": "int"}
    strings.withColumns({c: F.col(c).cast(t) for c, t in numbers.items()}).write.parquet(str(tmp_path / "pq"))
    strings.write.option("header", True).csv(str(tmp_path / "csv"))

    typed = read_raw(spark, [str(tmp_path / "pq")])
    assert {c: t for c, t in typed.dtypes if c in numbers} == numbers
    reasons = Counter(r["reason"] for r in with_reason(typed, TASKS).collect())  # files come back in any order
    assert reasons == Counter([None, None, "label_out_of_range", "bad_impressions", "clicks_exceed_impressions"])

    mixed = read_raw(spark, [str(tmp_path / "pq"), str(tmp_path / "csv")])  # typed in one, text in the other
    assert all(t == "string" for c, t in mixed.dtypes if c in numbers)
    assert Counter(r["reason"] for r in with_reason(mixed, TASKS).collect()) == reasons + reasons

    manifest = run_prepare(spark, [str(tmp_path / "pq")], str(tmp_path / "out"), TASKS, PrepareConfig())
    assert manifest["quarantine"] == {"label_out_of_range": 1, "bad_impressions": 1, "clicks_exceed_impressions": 1}
    quarantine = pq.read_table(tmp_path / "out" / "quarantine")
    assert quarantine.schema.field("impressions").type == "string"  # one quarantine schema for any input
    assert sorted(quarantine.column("impressions").to_pylist()) == ["-3", "10", "10"]


def _cli(*args, timeout=300):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "/nonexistent/logs", "--task-map", "configs/tasks.yaml"], "input not found"),
        (["--input", "configs", "--task-map", "configs/tasks.yaml"], "no Parquet"),
        (["--input", "configs", "--task-map", "/nonexistent.yaml"], "task map not found"),
    ],
)
def test_cli_user_errors_are_one_line(args, message, tmp_path):
    result = _cli("prepare", *args, "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.cluster
def test_prepare_on_local_cluster(tmp_path):
    """The job ships to separate executor JVMs (and Python workers) unchanged."""
    logs = str(tmp_path / "logs")
    synth = _cli("synth", "--output", logs, "--rows", "3000", "--seed", "5", "--dirt", "0.2",
                 "--master", "local[1]")
    assert synth.returncode == 0, synth.stderr[-2000:]
    out = tmp_path / "out"
    result = _cli("prepare", "--input", logs, "--task-map", "configs/tasks.yaml", "--output", str(out),
                  "--master", "local-cluster[2,1,1024]")
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spark"]["master"].startswith("local-cluster")
    assert manifest["accepted_rows"] + manifest["quarantined_rows"] == 3000
    assert json.loads(result.stdout)["input"]["rows"] == 3000
