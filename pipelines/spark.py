"""Building the SparkSession every Spark verb uses.

Python workers must run this interpreter (the project venv), wherever the driver was started from.
Without --master and outside spark-submit the job runs on local[*]; under spark-submit the
submitted master wins. A cluster's own JVM settings are left alone; a local driver JVM (the whole of
Spark in local mode, competing with its own tasks for a few cores) is tuned for a batch job:

- the throughput garbage collector: G1's concurrent threads compete with the tasks;
- higher JIT tier thresholds: rarely hot methods stay with the cheaper compiler tiers;
- the class-data-sharing archive `make install` builds (:mod:`pipelines.class_archive`), when present;
- 16 MB shuffle partitions instead of 64 MB: its tasks share one driver heap, and smaller partitions
  spill less in prepare's sort before the aggregation;
- uncompressed sort spills: its cores, not its disk, are the bottleneck (the price is more
  temporary disk under spark.local.dir).

benchmarks/RESULTS.md has the measurements behind each.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession

# The class archive of :mod:`pipelines.class_archive`, one per environment and pyspark version.
ARCHIVE = Path(sys.prefix) / "share" / "adsrel" / f"spark-{pyspark.__version__}-classes.jsa"
# The JVM warns, on stdout, when it cannot map an archive (another JVM build, changed jars); it
# then runs without it, which is all we want, so the warning is only noise.
QUIET_ARCHIVE = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")

LOCAL_DRIVER_JAVA_OPTIONS = " ".join([
    "-XX:+UseParallelGC",
    "-XX:Tier3InvocationThreshold=2000", "-XX:Tier3CompileThreshold=20000",
    "-XX:Tier3BackEdgeThreshold=600000",
    "-XX:Tier4InvocationThreshold=50000", "-XX:Tier4CompileThreshold=60000",
    "-XX:Tier4BackEdgeThreshold=400000",
])

# A session that scores: scored_at as microsecond timestamps (the schema the local engine writes), no UI.
SCORING_SETTINGS = {"spark.ui.enabled": "false", "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}

LOCAL_SHUFFLE_PARTITION_SIZE = "16m"
LOCAL_SETTINGS = {
    "spark.sql.adaptive.advisoryPartitionSizeInBytes": LOCAL_SHUFFLE_PARTITION_SIZE,
    "spark.shuffle.spill.compress": "false",
}


# Spark's case mappings (lower, upper, initcap) build their tables when the class is first used, which
# in prepare happened inside pass 1 with every task waiting; a local driver loads the class in the
# background while the job is still being planned.
CASE_MAPPINGS_CLASS = "org.apache.spark.sql.catalyst.util.CollationAwareUTF8String"


def load_class_in_background(spark: SparkSession, name: str) -> threading.Thread:
    """Loads and initialises the JVM class ``name`` from a daemon thread; a failure (another Spark
    version, a stopped session) is ignored, as the class then just loads when first used."""

    def load() -> None:
        try:
            spark.sparkContext._jvm.java.lang.Class.forName(name)
        except Exception:  # noqa: BLE001 - only a warm-up
            pass

    thread = threading.Thread(target=load, name=f"adsrel-load-{name.rsplit('.', 1)[-1]}", daemon=True)
    thread.start()
    return thread


def archive_options(archive: Path = ARCHIVE) -> list[str]:
    """JVM options that map ``archive``, or none when there is no archive.

    Never name a missing file: -XX:SharedArchiveFile on a missing file also turns off the JDK's own
    default archive.
    """
    return [f"-XX:SharedArchiveFile={archive}", *QUIET_ARCHIVE] if archive.is_file() else []


def local_driver_java_options() -> str:
    """:data:`LOCAL_DRIVER_JAVA_OPTIONS`, plus the class archive of :mod:`pipelines.class_archive`
    when this environment has one."""
    return " ".join([LOCAL_DRIVER_JAVA_OPTIONS, *archive_options()])


def build_session(
    app_name: str,
    master: str | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    submitted = "spark.master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "") or os.environ.get(
        "SPARK_ENV_LOADED"
    )
    if master:
        builder = builder.master(master)
    elif not submitted:
        builder = builder.master("local[*]")
    local = (master or "").startswith("local") or (not master and not submitted)
    settings = {
        **({"spark.driver.extraJavaOptions": local_driver_java_options(), **LOCAL_SETTINGS} if local else {}),
        "spark.pyspark.python": os.environ["PYSPARK_PYTHON"],
        "spark.pyspark.driver.python": os.environ["PYSPARK_DRIVER_PYTHON"],
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.adaptive.enabled": "true",
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if local:
        load_class_in_background(spark, CASE_MAPPINGS_CLASS)
    return spark
