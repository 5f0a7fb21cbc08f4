"""The Spark engine of `adsrel score` (the default; ``--master`` or spark-submit for a cluster).

Two passes over the candidates, each a ``mapInArrow`` of the same check (features/candidates.py):
pass 1 writes the rejected rows under ``rejected/reason=*``, pass 2 scores the accepted ones.

The model artifact (and a backbone given as a directory) is shipped to the executors as archives
(``SparkContext.addArchive``): no shared filesystem is assumed. Each Python worker loads it once, on its
first batch, and keeps it for every later task (Spark reuses its Python workers); torch in a
worker uses as many threads as Spark gives the task cores (``spark.task.cpus``), so workers do not
oversubscribe the machine.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.accumulators import AccumulatorParam
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, from_arrow_type

from features.candidates import (
    CANDIDATE_COLUMNS,
    REASONS,
    REQUIRED_COLUMNS,
    ROW_SCHEMA,
    RUN_COLUMNS,
    SCORE_SCHEMA,
    check_candidates,
    rejected_rows,
)
from features.progress import duration, log
from features.schema import CORRUPT
from features.staged_output import StagedOutput
from features.task_map import TaskMap
from models.backbone import DEFAULT_BACKBONE, resolve_backbone
from pipelines.data.inputs import count_parquet_rows, read_with_spark
from pipelines.scoring.model import ResolvedModel
from pipelines.scoring.output import Counts, peak_rss_mib
from pipelines.scoring.rows import score_rows

STRING_INPUT = T.StructType([T.StructField(c, T.StringType()) for c in (*CANDIDATE_COLUMNS, CORRUPT)])
REJECTED = T.StructType([*STRING_INPUT.fields, T.StructField("reason", T.StringType())])
SCORED = from_arrow_schema(ROW_SCHEMA)


class MaxParam(AccumulatorParam):
    """An accumulator that keeps the largest value added (the peak memory of any Python worker)."""

    def zero(self, value: float) -> float:
        return 0.0

    def addInPlace(self, a: float, b: float) -> float:  # noqa: N802 - Spark's name
        return max(a, b)


def read_candidates(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Every input as the candidate columns, strings (absent ones null), plus _corrupt_record."""
    frames = []
    for path in paths:
        df = read_with_spark(spark, path, columns=CANDIDATE_COLUMNS, required=REQUIRED_COLUMNS)
        frames.append(df.select(*[F.col(c).cast("string").alias(c) if c in df.columns
                                  else F.lit(None).cast("string").alias(c) for c in STRING_INPUT.fieldNames()]))
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other)
    return df


@dataclass(frozen=True)
class ShippedModel:
    """What a Python worker needs to load the model: the names its files were shipped under."""

    model_file: str
    backbone_file: str | None
    digest: str
    version: str | None  # the registered version (the source_version of a plain model's rows)


_LOADED: dict[str, Any] = {}  # per Python worker: model digest -> Scorer


def worker_scorer(shipped: ShippedModel, loads=None):
    """The scorer of this Python worker, loaded on its first call (counted in ``loads``); torch gets
    the task's cores."""
    scorer = _LOADED.get(shipped.digest)
    if scorer is None:
        if loads is not None:
            loads.add(1)
        import torch
        from pyspark import SparkFiles, TaskContext

        from models.routing import load_scorer

        context = TaskContext.get()
        torch.set_num_threads(max(1, int(context.cpus())) if context is not None else 1)
        backbone = SparkFiles.get(shipped.backbone_file) if shipped.backbone_file else None
        scorer = _LOADED[shipped.digest] = load_scorer(SparkFiles.get(shipped.model_file), backbone=backbone)
    return scorer


def _rejected_batches(task_map: TaskMap, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        table = pa.Table.from_batches([batch])
        rejected = rejected_rows(table, check_candidates(table, task_map))
        if rejected.num_rows:
            yield from rejected.to_batches()


def _scored_batches(shipped: ShippedModel, shadow: ShippedModel | None, memory, loads,
                    batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    scorer = worker_scorer(shipped, loads)
    shadow_scorer = worker_scorer(shadow, loads) if shadow else None
    for batch in batches:
        checked = check_candidates(pa.Table.from_batches([batch]), scorer.task_map)
        accepted = checked.filter(pc.is_null(checked["reason"]))
        if accepted.num_rows:
            yield from score_rows(scorer, accepted, shipped.version, shadow_scorer).to_batches()
    memory.add(peak_rss_mib())


def _ship(spark: SparkSession, resolved: ResolvedModel, staging: Path) -> ShippedModel:
    """Zips the model (and a backbone given as a directory) under unique names and adds them to the
    job as archives, which every executor unpacks where ``SparkFiles.get(name)`` finds them."""
    from models.artifact import read_metadata

    tag = f"{resolved.digest.split(':')[-1][:12]}-{uuid.uuid4().hex[:8]}"

    def ship(directory: Path, name: str) -> str:
        archive = shutil.make_archive(str(staging / name), "zip", root_dir=directory)
        spark.sparkContext.addArchive(archive)
        return Path(archive).name

    model_file = ship(resolved.model_dir, f"_model-{tag}")
    backbone_file = None
    reference = read_metadata(resolved.model_dir)["base_model"]["reference"]
    if reference not in (DEFAULT_BACKBONE, f"sentence-transformers/{DEFAULT_BACKBONE}") and Path(reference).is_dir():
        backbone_file = ship(Path(resolve_backbone(reference)), f"_backbone-{tag}")
    return ShippedModel(model_file, backbone_file, resolved.digest, resolved.version)


def _stage_rows(spark: SparkSession) -> dict[int, int]:
    """Rows each running stage has read so far (files and shuffle), from Spark's live status store,
    which executors update while their tasks run; empty where it cannot be read (a private API:
    progress then shows task counts only, rather than failing)."""
    try:
        stages = spark.sparkContext._jsc.sc().statusStore().activeStages()
        found = (stages.apply(i) for i in range(stages.size()))
        return {int(s.stageId()): int(s.inputRecords()) + int(s.shuffleReadRecords()) for s in found}
    except Exception:  # noqa: BLE001
        return {}


def _report_progress(spark: SparkSession, done: threading.Event, every_s: float = 15.0,
                     total_rows: int | None = None) -> None:
    """A line every ``every_s`` seconds per running stage: rows read of ``total_rows`` with an ETA,
    and its tasks (Spark's own bar is off)."""
    tracker, started, first_seen = spark.sparkContext.statusTracker(), time.monotonic(), {}
    while not done.wait(every_s):
        now, rows = time.monotonic(), _stage_rows(spark)
        parts = []
        for stage in filter(None, (tracker.getStageInfo(s) for s in tracker.getActiveStageIds())):
            seen, since = rows.get(stage.stageId), first_seen.setdefault(stage.stageId, now)
            text = f"stage {stage.stageId}: "
            if seen is not None and total_rows:
                eta = f", ETA {duration((now - since) * (total_rows - seen) / seen)}" if 0 < seen < total_rows else ""
                text += f"{seen:,}/{total_rows:,} rows{eta}, "
            parts.append(text + f"{stage.numCompletedTasks}/{stage.numTasks} tasks")
        if parts:  # the elapsed time tells a heartbeat of a long task from a repeated line
            log("score", f"{'; '.join(parts)} ({now - started:.0f} s)")


def score_with_spark(resolved: ResolvedModel, candidates: list[str], out: StagedOutput, *, master: str | None,
                     scored_at: datetime, spark: SparkSession | None = None,
                     shadow: ResolvedModel | None = None) -> Counts:
    from pipelines.spark import SCORING_SETTINGS, build_session

    # stopped at the end only when this run started it: a session already running in the process (a
    # notebook's, a test's) is the caller's and stays up
    own = spark is None and SparkSession.getActiveSession() is None
    if spark is None:
        spark = build_session("adsrel-score", master, SCORING_SETTINGS)
    done = threading.Event()
    try:
        threading.Thread(target=_report_progress, args=(spark, done, 15.0, count_parquet_rows(candidates)),
                         daemon=True, name="adsrel-score-progress").start()
        task_map = resolved.task_map()
        df = read_candidates(spark, candidates)
        cores = spark.sparkContext.defaultParallelism
        if df.rdd.getNumPartitions() < cores:  # one small file would otherwise score on one core
            df = df.repartition(cores)

        log("score", "pass 1: checking candidates, writing the rejected ones")
        reasons = Observation("rejected")
        rejected = df.mapInArrow(lambda batches: _rejected_batches(task_map, batches), REJECTED)
        rejected = rejected.observe(reasons, *[F.count(F.when(F.col("reason") == r, 1)).alias(r) for r in REASONS])
        rejected.write.mode("overwrite").partitionBy("reason").parquet(str(out.path("rejected")))

        log("score", "pass 2: scoring the accepted candidates")
        shipped = _ship(spark, resolved, out.staging)
        shipped_shadow = _ship(spark, shadow, out.staging) if shadow else None
        memory, loads = spark.sparkContext.accumulator(0.0, MaxParam()), spark.sparkContext.accumulator(0)
        scored_seen = Observation("scored")
        scored = df.mapInArrow(lambda batches: _scored_batches(shipped, shipped_shadow, memory, loads, batches),
                               SCORED)
        constant = resolved.columns(scored_at, shadow)
        scored = scored.withColumns({k: F.lit(constant[k]).cast(from_arrow_type(SCORE_SCHEMA.field(k).type))
                                     for k in RUN_COLUMNS})
        scored = scored.observe(scored_seen, F.count(F.lit(1)).alias("rows"))
        scored.write.mode("overwrite").parquet(str(out.path("scores")))
        input_rows = df.count()
    finally:
        done.set()
        if own:
            spark.stop()
    rejected_counts = {r: int(n) for r, n in reasons.get.items() if n}
    return Counts(input_rows=input_rows, scored=int(scored_seen.get["rows"]), rejected=rejected_counts,
                  peak_memory_mib={"driver_python": peak_rss_mib(), "python_worker": float(memory.value)},
                  model_loads=int(loads.value))
