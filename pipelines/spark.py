"""Building the SparkSession every Spark verb uses.

Python workers must run this interpreter (the project venv), wherever the driver was started from.
Without --master and outside spark-submit the job runs on local[*]; under spark-submit the
submitted master wins.

A local driver JVM (the whole of Spark in local mode) gets the throughput garbage collector: on a
batch job with few cores, G1's concurrent threads compete with the tasks. Measured with `adsrel
prepare` on 4M rows, local[2], fresh processes alternating: 93-105 s with ParallelGC, 118-121 s
with G1. It also compiles fewer methods: in a fresh JVM the JIT compilers spent 45 s of CPU (38 s
of it C2, per Java Flight Recorder) during a 76 s prepare run on 2 cores, in competition with the
tasks; higher tier thresholds leave rarely hot methods to the cheaper tiers. Same benchmark, fresh
processes, 10 runs with these thresholds against 11 without, interleaved: 64.9-74.2 s (mean 69.0)
against 65.0-83.5 s (mean 73.4). Where `make install` built a class archive
(:mod:`pipelines.class_archive`), the local driver maps it. A cluster's own JVM settings are left
alone.

A local driver also asks adaptive execution for 16 MB shuffle partitions instead of 64 MB: its
tasks share the one driver heap (1g by default), and prepare's sort before the aggregation spilled
less with smaller partitions (4M rows: 1.7 GB spilled in the reduce stage instead of 2.5 GB). Warm
JVM, whole prepare job, alternating, five rounds: 35.2-39.8 s against 37.1-44.8 s, faster in every
round.

A local driver writes its sort spills uncompressed: its two cores are the bottleneck and the
spills go to the local disk's page cache, where compressing them costs more CPU than writing the
bytes. Prepare at 4M rows spills about 1.7 GB (678 MB compressed) in its reduce stage; fresh
processes alternating, six rounds: 51.1-59.3 s (mean 56.7) against 54.1-66.6 s (mean 60.4), faster
in five of six. The price is that much more temporary disk under spark.local.dir.
"""

from __future__ import annotations

import os
import sys
import threading

from pyspark.sql import SparkSession

from pipelines.class_archive import archive_options

LOCAL_DRIVER_JAVA_OPTIONS = " ".join([
    "-XX:+UseParallelGC",
    "-XX:Tier3InvocationThreshold=2000", "-XX:Tier3CompileThreshold=20000",
    "-XX:Tier3BackEdgeThreshold=600000",
    "-XX:Tier4InvocationThreshold=50000", "-XX:Tier4CompileThreshold=60000",
    "-XX:Tier4BackEdgeThreshold=400000",
])

LOCAL_SHUFFLE_PARTITION_SIZE = "16m"
LOCAL_SETTINGS = {
    "spark.sql.adaptive.advisoryPartitionSizeInBytes": LOCAL_SHUFFLE_PARTITION_SIZE,
    "spark.shuffle.spill.compress": "false",
}


# Spark's case mappings (lower, upper, initcap) build their tables when the class is first used: in
# a fresh JVM, Class.forName of it took 2.2 s, and the first query with a lower() 1.0 s more than a
# plain one. In prepare that happened inside pass 1, whose tasks both waited for it. A local driver
# loads the class in the background while the job is still being planned.
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
