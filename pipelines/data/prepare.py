"""`adsrel prepare`: raw query-ad logs -> task shards, quarantine and manifest.

Two passes over the input, each a chain of DataFrame -> DataFrame functions, submitted together
(pass 1 from a second thread), then a count of the input rows that reconciles them:

1. every row gets a quarantine ``reason`` (null when it is fine) from Spark column expressions;
   the failing rows are written to ``quarantine/reason=*`` while an observation on them counts
   rows per reason;
2. the accepted rows are normalised (one vectorised Arrow UDF, :mod:`features.text`),
   de-duplicated per (query, ad_id, market, day), aggregated per (query, ad_id, market), labelled,
   split by hashed query and written to ``shards/split=*/task=*``.

Everything is written aside and swapped in at the end, the manifest last (features/staged_output.py):
a run that fails leaves an earlier complete output exactly as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from features.errors import UserError
from features.progress import log
from features.schema import (
    CORRUPT,
    LABEL_SOURCES,
    LOCALE_PATTERN,
    LOWERCASED_TEXT,
    MAX_GRADE,
    MIN_GRADE,
    RAW_COLUMNS,
    RAW_TYPES,
    REQUIRED_COLUMNS,
    SHARD_COLUMNS,
    SPLITS,
)
from features.shards import MANIFEST, read_table, split_files
from features.staged_output import StagedOutput
from features.task_map import (
    TaskMap,
    locale_column,
    normalise_locale,
    task_column,
    task_map_by_values,
    task_name_column,
)
from features.text import is_blank, normalise_text_columns
from pipelines.data.inputs import read_with_spark
from pipelines.data.prepare_config import PrepareConfig

SCHEMA_VERSION = 1
KEY = ("query", "ad_id", "market")
# A 64-bit hash of KEY that leads the grouping keys of both aggregations: the sort before them then
# compares longs instead of query strings that often share their first bytes.
KEY_HASH = "_key_hash"
# A well-formed market: language lower case, region upper case. \z, not $: Java's $ also matches before
# a final line break, which let 'en-US\n' through.
LOCALE = rf"\A{LOCALE_PATTERN}\z"
# Shard columns with (nearly) one value per example, ad_title included: Parquet's dictionary encoding
# only fails and falls back for them, and trying costs a good part of the shard write.
PLAIN_ENCODED = ("example_id", "ad_id", "ad_title", "ad_description")

# Quarantine reasons in the order they are checked: a row gets the first that applies.
REASONS = (
    "malformed_record",
    "bad_date",
    "missing_query",
    "missing_ad_id",
    "missing_advertiser_id",
    "missing_ad_title",
    "invalid_market",
    "missing_vertical",
    "bad_impressions",
    "bad_clicks",
    "clicks_exceed_impressions",
    "bad_position",
    "label_out_of_range",
    "bad_label_source",
    "unmapped",
)


# ---------------------------------------------------------------- reading

def _has_canonical_type(df: DataFrame, column: str) -> bool:
    return dict(df.dtypes)[column] == RAW_TYPES[column]


def read_input(spark: SparkSession, path: str) -> DataFrame:
    """One input as its raw columns, plus ``_corrupt_record`` (null if parsed).

    A column keeps its type when it already has the canonical one (numbers in Parquet); anything
    else is read as a string, so that a malformed value becomes a quarantine reason, not a failure.
    An optional column the input lacks is null.
    """
    df = read_with_spark(spark, path, columns=RAW_COLUMNS, required=REQUIRED_COLUMNS)
    columns = [
        F.lit(None).cast(RAW_TYPES[c]).alias(c) if c not in df.columns
        else F.col(c) if _has_canonical_type(df, c)
        else F.col(c).cast("string").alias(c)
        for c in RAW_COLUMNS
    ]
    corrupt = F.col(CORRUPT) if CORRUPT in df.columns else F.lit(None).cast("string")
    return df.select(*columns, corrupt.alias(CORRUPT))


def read_raw(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """All inputs as one frame; a column typed in one input and not in another is a string in all.

    Keeping canonical types spares a number-to-string-to-number round trip per row and column, in
    both passes over the input.
    """
    frames = [read_input(spark, p) for p in paths]
    loose = [c for c in RAW_COLUMNS if not all(_has_canonical_type(f, c) for f in frames)]
    frames = [f.withColumns({c: F.col(c).cast("string") for c in loose}) if loose else f for f in frames]
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other)
    return df


# ---------------------------------------------------------------- validation


def _typed(name: str) -> Column:
    return F.col(name).try_cast(RAW_TYPES[name])


def _present(df: DataFrame, name: str) -> Column:
    """The value is there: not null, and for text not blank either."""
    column = F.col(name)
    return ~is_blank(column) if dict(df.dtypes)[name] == "string" else column.isNotNull()


def _normalised(
    column: Column, normalise: Callable[[Column], Column], canonical: Iterable[str], pattern: str | None = None
) -> Column:
    """``normalise(column)``, except for a value already in one of the ``canonical`` forms or
    matching ``pattern`` (a regex whose every match ``normalise`` leaves as it is).

    Nearly every row's market, vertical and label source is spelt as the task map or the schema
    spells it: one hash-set lookup then replaces the string copies of trim, lower and the locale
    split.
    """
    canonical = sorted(canonical)
    checks = ([column.isin(canonical)] if canonical else []) + ([column.rlike(pattern)] if pattern else [])
    if not checks:
        return normalise(column)
    already = checks[0] if len(checks) == 1 else checks[0] | checks[1]
    return F.when(already, column).otherwise(normalise(column))


def _lower_trimmed(column: Column) -> Column:
    return F.lower(F.trim(column))


def with_segment(df: DataFrame, task_map: TaskMap | None = None) -> DataFrame:
    """Adds ``_market`` (normalised locale), ``_vertical`` (trimmed, lower case) and
    ``_label_source`` (trimmed, lower case).

    The values ``task_map`` names, the label sources of the schema and markets already well formed
    skip the normalisation, which is costly (the locale split repeats a regex replace per value) and
    nearly always a no-op: well-formed markets the map does not name skip it too.
    """
    markets = [m for m in task_map.markets if normalise_locale(m) == m] if task_map else []
    verticals = [v for v in task_map.verticals if v == v.strip().lower()] if task_map else []
    return df.withColumns(
        {
            "_market": _normalised(F.col("market"), locale_column, markets, LOCALE),
            "_vertical": _normalised(F.col("vertical"), _lower_trimmed, verticals),
            "_label_source": _normalised(F.col("label_source"), _lower_trimmed, LABEL_SOURCES),
        }
    )


def with_reason(df: DataFrame, task_map: TaskMap | None) -> DataFrame:
    """Adds ``reason`` (first failing rule, null if the row is fine) and ``_task_id``.

    Works on the raw columns of :func:`read_raw` (strings, or already the canonical types), so any
    malformed value becomes a reason. Without a task map the ``unmapped`` rule is skipped
    (``_task_id`` is null).
    """
    # The typed date is a column of its own: typed_accepted reuses it instead of parsing again.
    df = with_segment(df, task_map).withColumn("_event_date", _typed("event_date"))
    impressions, clicks = _typed("impressions"), _typed("clicks")
    position, label = _typed("position"), _typed("label")
    source = F.col("_label_source")
    task_id = (
        task_column(task_map, F.col("_market"), F.col("_vertical"))
        if task_map
        else F.lit(None).cast("int")
    )
    checks: list[tuple[str, Column]] = [
        ("malformed_record", F.col(CORRUPT).isNotNull()),
        ("bad_date", F.col("_event_date").isNull()),
        ("missing_query", is_blank(F.col("query"))),
        ("missing_ad_id", is_blank(F.col("ad_id"))),
        ("missing_advertiser_id", is_blank(F.col("advertiser_id"))),
        ("missing_ad_title", is_blank(F.col("ad_title"))),
        ("invalid_market", F.col("_market").isNull() | ~F.col("_market").rlike(LOCALE)),
        ("missing_vertical", is_blank(F.col("vertical"))),
        ("bad_impressions", impressions.isNull() | (impressions < 0)),
        ("bad_clicks", clicks.isNull() | (clicks < 0)),
        ("clicks_exceed_impressions", clicks > impressions),
        ("bad_position", _present(df, "position") & (position.isNull() | (position < 1))),
        ("label_out_of_range",
         _present(df, "label") & (label.isNull() | ~label.between(MIN_GRADE, MAX_GRADE))),
        ("bad_label_source", _present(df, "label_source") & ~source.isin(list(LABEL_SOURCES))),
    ]
    if task_map:
        checks.append(("unmapped", task_id.isNull()))
    reason = None
    for name, failed in checks:
        reason = F.when(failed, name) if reason is None else reason.when(failed, name)
    return df.withColumns({"reason": reason, "_task_id": task_id})


def typed_accepted(df: DataFrame) -> DataFrame:
    """Accepted rows (reason null) with canonical types, normalised segment and label source.

    A grade without a source counts as a human judgment; a source without a grade is no judgment.
    """
    source = F.col("_label_source")
    label = _typed("label")
    return df.select(
        F.col("_event_date").alias("event_date"),
        F.col("_market").alias("market"),
        F.col("_vertical").alias("vertical"),
        "query",
        F.trim(F.col("ad_id")).alias("ad_id"),
        F.trim(F.col("advertiser_id")).alias("advertiser_id"),
        "ad_title",
        F.coalesce(F.col("ad_description"), F.lit("")).alias("ad_description"),
        F.coalesce(F.col("display_url"), F.lit("")).alias("display_url"),
        _typed("impressions").alias("impressions"),
        _typed("clicks").alias("clicks"),
        _typed("position").alias("position"),
        label.alias("label"),
        F.when(label.isNull(), None).when(is_blank(source), "human").otherwise(source)
        .alias("label_source"),
        F.col("_task_id").alias("task_id"),
    )


def normalise_texts(df: DataFrame, limits: dict[str, int]) -> DataFrame:
    """NFKC, entities, whitespace and length bounds; queries and URLs also lower-cased."""
    return normalise_text_columns(df, limits, lowercase=LOWERCASED_TEXT)


# ---------------------------------------------------------------- aggregation and labels


def _key_hash() -> Column:
    return F.xxhash64(*KEY)


def _example_keys(df: DataFrame) -> list[Column]:
    """KEY led by its hash (:data:`KEY_HASH`, computed unless ``df`` carries it already)."""
    key_hash = F.col(KEY_HASH) if KEY_HASH in df.columns else _key_hash().alias(KEY_HASH)
    return [key_hash, *[F.col(c) for c in KEY]]


def deduplicate_days(df: DataFrame) -> DataFrame:
    """One row per (query, ad_id, market, event_date): a repeated daily row is a logging duplicate.

    The kept values are the greatest struct of the copies, so the choice is deterministic. ``rows``
    counts the raw rows folded in. The output keeps :data:`KEY_HASH` for :func:`aggregate_examples`.
    """
    payload = F.max(
        F.struct(
            "impressions", "clicks", "position", "label", "label_source", "task_id", "vertical",
            "advertiser_id", "ad_title", "ad_description", "display_url",
        )
    ).alias("v")
    return (
        df.groupBy(*_example_keys(df), "event_date")
        .agg(payload, F.count(F.lit(1)).alias("rows"))
        .select(KEY_HASH, *KEY, "event_date", "rows", "v.*")
    )


def _judged(source: str, what: str) -> Column:
    hit = F.col("label_source") == source
    if what == "n":
        return F.count(F.when(hit, F.col("label")))
    return F.sum(F.when(hit, F.col("label")))


def aggregate_examples(df: DataFrame) -> DataFrame:
    """Per (query, ad_id, market): summed impressions and clicks, impression-weighted position,
    judged grades per source, and the most recent ad text."""
    with_pos = F.col("position").isNotNull()
    aggs = [
        F.sum("rows").alias("rows"),
        F.count(F.lit(1)).alias("observations"),
        F.sum("impressions").alias("impressions"),
        F.sum("clicks").alias("clicks"),
        F.sum(F.when(with_pos, F.col("position") * F.col("impressions"))).alias("_pos_imps"),
        F.sum(F.when(with_pos, F.col("impressions"))).alias("_imps_with_pos"),
        F.max(F.struct("event_date", "ad_title", "ad_description", "display_url",
                       "advertiser_id")).alias("_latest"),
        F.min(F.struct("task_id", "vertical")).alias("_segment"),
    ]
    for source in LABEL_SOURCES:
        aggs += [_judged(source, "sum").alias(f"_{source}_sum"),
                 _judged(source, "n").alias(f"_{source}_n")]
    out = df.groupBy(*_example_keys(df)).agg(*aggs)
    position = F.when(
        F.col("_imps_with_pos") > 0, F.col("_pos_imps") / F.col("_imps_with_pos")
    ).otherwise(F.lit(None).cast("double"))
    return out.select(
        *KEY,
        "rows",
        "observations",
        "impressions",
        "clicks",
        position.alias("position"),
        "_latest.ad_title",
        "_latest.ad_description",
        "_latest.display_url",
        "_latest.advertiser_id",
        "_segment.task_id",
        "_segment.vertical",
        *[f"_{s}_{w}" for s in LABEL_SOURCES for w in ("sum", "n")],
    )


def derive_labels(df: DataFrame, config: PrepareConfig) -> DataFrame:
    """Adds grade, label (0/1 or null), label_source and weight.

    Judgments win in the order human, llm, click (their mean grade against the threshold). An
    unjudged example gets a click label when it has enough impressions: its CTR divided by the
    examination probability of its mean position (position ** -power) against the CTR threshold.
    Otherwise it stays unlabelled (and is counted, not written), as it does when click labels are off.
    """
    grade = None
    source = None
    for s in LABEL_SOURCES:
        has = F.col(f"_{s}_n") > 0
        mean = F.col(f"_{s}_sum") / F.col(f"_{s}_n")
        grade = F.when(has, mean) if grade is None else grade.when(has, mean)
        source = F.when(has, F.lit(s)) if source is None else source.when(has, F.lit(s))
    grade = grade.otherwise(F.lit(None).cast("double"))
    examined = F.pow(F.coalesce(F.col("position"), F.lit(1.0)), -config.position_bias_power)
    debiased_ctr = F.col("clicks") / (F.col("impressions") * examined)
    clickable = F.lit(config.click_labels) & (F.col("impressions") >= config.min_impressions)
    label = F.when(grade.isNotNull(), (grade >= config.label_threshold).cast("int")).when(
        clickable, (debiased_ctr >= config.click_ctr_threshold).cast("int")
    )
    source = source.when(clickable, F.lit("click"))
    weights = F.create_map(*[x for k, v in config.source_weights.items() for x in (F.lit(k), F.lit(v))])
    df = df.withColumns({"grade": grade, "label": label, "label_source": source})
    df = df.withColumn("weight", weights[F.col("label_source")].cast("double"))
    return df.drop(*[f"_{s}_{w}" for s in LABEL_SOURCES for w in ("sum", "n")])


def split_column(query: Column, ratios: Sequence[float], salt: str) -> Column:
    """train/valid/test from a hash of the normalised query: one query, one split, every run."""
    bucket = F.pmod(F.xxhash64(F.lit(salt), query), F.lit(1_000_000)) / 1_000_000.0
    return F.when(bucket < ratios[0], "train").when(bucket < ratios[0] + ratios[1], "valid").otherwise(
        "test"
    )


def _hex16(value: Column) -> Column:
    """A long as 16 hex digits. Only a value below 2**60 and not negative has fewer, so only such a
    value (1 in 16 hashes) pays for the padding."""
    digits = F.hex(value)
    return F.when((value < 0) | (value >= F.lit(1 << 60)), digits).otherwise(F.lpad(digits, 16, "0"))


def example_id_column() -> Column:
    """Stable id of an example: 128 bits of xxhash64 over normalised query, ad_id and market, as 32
    lower-case hex digits."""
    halves = [_hex16(F.xxhash64(F.lit(salt), *[F.col(c) for c in KEY])) for salt in ("example-id-a", "example-id-b")]
    return F.lower(F.concat(*halves))


def with_split_and_ids(df: DataFrame, task_map: TaskMap, config: PrepareConfig) -> DataFrame:
    """Adds split, example_id and task name: to the written examples only, as the unlabelled ones
    (a large share of the examples) would only be dropped after."""
    return df.withColumns(
        {
            "split": split_column(F.col("query"), config.split_ratios, config.split_salt),
            "example_id": example_id_column(),
            "task": task_name_column(task_map, F.col("task_id")),
        }
    )


def examples(accepted: DataFrame, config: PrepareConfig) -> DataFrame:
    """Accepted raw rows (with reason and _task_id) -> labelled-or-not examples (split and ids are
    added after the unlabelled ones are counted and dropped: :func:`with_split_and_ids`).

    One shuffle: repartitioning by the hash of the example key lets both the per-day de-duplication
    and the per-example aggregation reuse it, and one sort serves both.
    """
    typed = normalise_texts(typed_accepted(accepted), config.text_limits)
    clustered = typed.withColumn(KEY_HASH, _key_hash()).repartition(KEY_HASH)
    aggregated = aggregate_examples(deduplicate_days(clustered))
    return derive_labels(aggregated, config)


# ---------------------------------------------------------------- the job


def _count_reasons(reasons: Sequence[str]) -> list[Column]:
    return [F.count(F.when(F.col("reason") == r, 1)).alias(r) for r in reasons]


def _progress(message: str, started: float) -> None:
    log("prepare", f"[{time.time() - started:6.1f}s] {message}")


def _write_quarantine(checked: DataFrame, reasons: Sequence[str], path: Path) -> dict[str, int]:
    """Pass 1: the rows with a reason, as read, under ``reason=*``; returns the rows per reason."""
    counts = Observation("reasons")
    quarantined = checked.where(F.col("reason").isNotNull()).observe(counts, *_count_reasons(reasons))
    as_read = [F.col(c).cast("string").alias(c) for c in RAW_COLUMNS]  # one quarantine schema
    quarantined.select(*as_read, CORRUPT, "reason").write.mode("overwrite").partitionBy(
        "reason"
    ).parquet(str(path))
    seen = counts.get
    return {r: int(seen[r] or 0) for r in reasons if seen[r]}


def _write_shards(
    spark: SparkSession, checked: DataFrame, task_map: TaskMap, config: PrepareConfig, path: Path
) -> tuple[dict[str, int], int]:
    """Pass 2: labelled examples under ``split=*/task=*``; returns the example counts (labelled or
    not) and the accepted rows."""
    accepted_seen = Observation("accepted")
    written_seen = Observation("examples")
    accepted = checked.where(F.col("reason").isNull()).observe(
        accepted_seen, F.count(F.lit(1)).alias("rows")
    )
    counted = examples(accepted, config).observe(
        written_seen,
        F.count(F.lit(1)).alias("examples"),
        F.sum(F.when(F.col("label").isNull(), 1).otherwise(0)).alias("unlabelled_examples"),
        F.sum(F.when(F.col("label").isNull(), F.col("rows")).otherwise(0)).alias("unlabelled_rows"),
        F.sum(F.col("rows") - F.col("observations")).alias("duplicate_rows"),
    )
    labelled = with_split_and_ids(counted.where(F.col("label").isNotNull()), task_map, config)
    # One writing task per core, not one per shuffle partition: every task writes a file for each
    # (split, task) it holds, so one per partition made hundreds of tiny files. Coalescing keeps the
    # aggregation's partitions (and its sorts) as they are.
    (
        labelled.select(*SHARD_COLUMNS, "rows", "split")
        .coalesce(spark.sparkContext.defaultParallelism)
        .write.mode("overwrite")
        .option("maxRecordsPerFile", config.max_records_per_file)
        .options(**{f"parquet.enable.dictionary#{c}": "false" for c in PLAIN_ENCODED})
        .partitionBy("split", "task")
        .parquet(str(path))
    )
    return {k: int(v or 0) for k, v in written_seen.get.items()}, int(accepted_seen.get["rows"])


def count_shards(output: Path) -> tuple[dict[str, dict[str, dict[str, int]]], int]:
    """Rows and positives per split and task, and the input rows folded into them, from the shard
    files' label and rows columns (pyarrow: cheaper than a Spark job)."""
    counts: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
    folded = 0
    for split in SPLITS:
        for task, paths in split_files(output, split).items():
            table = read_table(paths, ["label", "rows"])
            counts[split][task] = {"rows": table.num_rows, "positives": int(pc.sum(table["label"]).as_py() or 0)}
            folded += int(pc.sum(table["rows"]).as_py() or 0)
    return counts, folded


def discover_task_map(raw: DataFrame, task_by: str) -> TaskMap:
    """--task-by: one task per distinct market and/or vertical among the otherwise valid rows."""
    keys = tuple(k.strip() for k in task_by.split(","))
    if not keys or any(k not in ("market", "vertical") for k in keys) or len(set(keys)) != len(keys):
        raise UserError("--task-by must be market, vertical or market,vertical")
    valid = with_reason(raw, None).where(F.col("reason").isNull())
    cols = [F.col("_market" if k == "market" else "_vertical").alias(k) for k in keys]
    values = [tuple(r) for r in valid.select(*cols).distinct().collect()]
    return task_map_by_values(keys, values)


def write_both_passes(
    spark: SparkSession, checked: DataFrame, task_map: TaskMap, config: PrepareConfig, out: Path
) -> tuple[dict[str, int], dict[str, int], int]:
    """Pass 1 (quarantine) and pass 2 (shards), submitted together: the scheduler still runs pass 1's
    tasks first, but pass 2 is planned meanwhile and its tasks take any core pass 1 leaves idle.
    Returns the quarantine counts, the example counts and the accepted rows."""
    reasons = [r for r in REASONS if r != "unmapped" or task_map]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="adsrel-quarantine") as pool:
        pass_1 = pool.submit(_write_quarantine, checked, reasons, out / "quarantine")
        try:
            examples_seen, accepted_rows = _write_shards(spark, checked, task_map, config, out / "shards")
        except BaseException:
            spark.sparkContext.cancelAllJobs()  # pass 1 stops too; pass 2's error is the one told
            raise
        return pass_1.result(), examples_seen, accepted_rows


def reconcile_input(input_rows: int, accepted_rows: int, quarantined_rows: int) -> None:
    """Every input row is accepted or quarantined."""
    if accepted_rows + quarantined_rows != input_rows:
        raise RuntimeError(
            f"count mismatch: {input_rows} input != {accepted_rows} accepted + {quarantined_rows} quarantined"
        )


def reconcile_examples(accepted_rows: int, folded_rows: int, unlabelled_rows: int) -> None:
    """Every accepted row is in an example, written or left unlabelled."""
    if folded_rows + unlabelled_rows != accepted_rows:
        raise RuntimeError("count mismatch between accepted rows and rows folded into examples")


def build_manifest(spark: SparkSession, inputs: Sequence[str], task_map: TaskMap, config: PrepareConfig,
                   task_by: str | None, counts: dict[str, Any], started: float) -> dict[str, Any]:
    """The manifest of docs/architecture.md from the run's counts (``input_rows``, ``accepted_rows``,
    ``quarantine``, ``examples`` as observed, ``split_counts``)."""
    ex = counts["examples"]
    return {
        "schema_version": SCHEMA_VERSION,
        "input": {"paths": [str(p) for p in inputs], "rows": counts["input_rows"]},
        "accepted_rows": counts["accepted_rows"],
        "quarantined_rows": sum(counts["quarantine"].values()),
        "quarantine": counts["quarantine"],
        "examples": {
            "written": ex["examples"] - ex["unlabelled_examples"],
            "unlabelled_excluded": ex["unlabelled_examples"],
            "unlabelled_rows": ex["unlabelled_rows"],
            "duplicate_rows_removed": ex["duplicate_rows"],
        },
        "tasks": [t.as_dict() for t in task_map.tasks],
        "unmapped": task_map.unmapped,
        "counts": counts["split_counts"],
        "config": {**asdict(config), "split_ratios": list(config.split_ratios), "task_by": task_by},
        "spark": {"version": spark.version, "master": spark.sparkContext.master},
        "seconds": round(time.time() - started, 2),
    }


def run_prepare(
    spark: SparkSession,
    inputs: Sequence[str],
    output: str,
    task_map: TaskMap | None,
    config: PrepareConfig,
    task_by: str | None = None,
) -> dict:
    """The whole job; returns the manifest it wrote."""
    started = time.time()
    with StagedOutput(output, ("shards", "quarantine"), MANIFEST) as staged:
        manifest = _prepare_into(spark, inputs, staged.staging, task_map, config, task_by, started)
        staged.publish(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    _progress(f"manifest written: {manifest['examples']['written']} examples", started)
    return manifest


def _prepare_into(spark: SparkSession, inputs: Sequence[str], out: Path, task_map: TaskMap | None,
                  config: PrepareConfig, task_by: str | None, started: float) -> dict[str, Any]:
    """Both passes into ``out`` (the staging directory); returns the manifest."""
    raw = read_raw(spark, inputs)
    if task_map is None:
        if not task_by:
            raise UserError("give --task-map or --task-by")
        task_map = discover_task_map(raw, task_by)
    _progress("pass 1 writes the quarantine, pass 2 the shards", started)
    quarantine, examples_seen, accepted_rows = write_both_passes(spark, with_reason(raw, task_map), task_map,
                                                                 config, out)
    # Counted apart from both passes, so that the reconciliation compares independent counts: an
    # observation over every row of pass 1 would break its whole-stage code generation; this count
    # reads no column, in a JVM the passes warmed. Reasons are observed on quarantined rows only.
    input_rows = raw.count()
    _progress(f"{input_rows} input rows: {accepted_rows} accepted, {sum(quarantine.values())} quarantined", started)
    reconcile_input(input_rows, accepted_rows, sum(quarantine.values()))
    _progress("counting shards", started)
    split_counts, folded_rows = count_shards(out)
    reconcile_examples(accepted_rows, folded_rows, examples_seen["unlabelled_rows"])
    return build_manifest(spark, inputs, task_map, config, task_by, {
        "input_rows": input_rows, "accepted_rows": accepted_rows, "quarantine": quarantine,
        "examples": examples_seen, "split_counts": split_counts}, started)
