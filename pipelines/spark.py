"""Building the SparkSession every Spark verb uses.

Python workers must run this interpreter (the project venv), wherever the driver was started from.
Without --master and outside spark-submit the job runs on local[*]; under spark-submit the
submitted master wins.

A local driver JVM (the whole of Spark in local mode) gets the throughput garbage collector: on a
batch job with few cores, G1's concurrent threads compete with the tasks. Measured with `adsrel
prepare` on 4M rows, local[2], fresh processes alternating: 93-105 s with ParallelGC, 118-121 s
with G1. A cluster's own JVM settings are left alone.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

LOCAL_DRIVER_JAVA_OPTIONS = "-XX:+UseParallelGC"


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
        **({"spark.driver.extraJavaOptions": LOCAL_DRIVER_JAVA_OPTIONS} if local else {}),
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
    return spark
