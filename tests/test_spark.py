"""The local driver's settings: collector, JIT thresholds, class archive, shuffle partition size,
classes loaded ahead."""

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pyspark

from pipelines.spark import (
    ARCHIVE,
    CASE_MAPPINGS_CLASS,
    archive_options,
    load_class_in_background,
    local_driver_java_options,
)


def test_local_driver_runs_the_throughput_collector(spark):
    management = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    collectors = {bean.getName() for bean in management.getGarbageCollectorMXBeans()}
    assert collectors == {"PS Scavenge", "PS MarkSweep"}  # G1 would be "G1 Young Generation", ...


def test_local_driver_asks_for_small_shuffle_partitions(spark):
    key = "spark.sql.adaptive.advisoryPartitionSizeInBytes"
    size = spark.sparkContext._jvm.org.apache.spark.network.util.JavaUtils.byteStringAsBytes(spark.conf.get(key))
    assert size == 16 * 2**20  # Spark's own default is 64 MB


def test_local_driver_spills_uncompressed(spark):
    assert spark.sparkContext.getConf().get("spark.shuffle.spill.compress") == "false"  # Spark: true


def test_local_driver_jit_compiles_only_hot_methods_late(spark):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = set(runtime.getInputArguments())
    assert {"-XX:Tier4InvocationThreshold=50000", "-XX:Tier3InvocationThreshold=2000"} <= arguments


def test_class_archive_is_named_only_when_it_exists(tmp_path):
    archive = tmp_path / "classes.jsa"
    assert archive_options(archive) == []  # naming a missing file would turn off the JDK's own archive
    archive.write_bytes(b"not an archive")
    assert archive_options(archive)[0] == f"-XX:SharedArchiveFile={archive}"


def test_a_stale_class_archive_is_ignored_quietly(tmp_path):
    """An archive whose jars changed since it was dumped (pyspark reinstalled) makes the JVM warn, on
    stdout, and run without it; the options keep that warning out of every job's output."""
    java = shutil.which("java", path=f"{os.environ.get('JAVA_HOME', '')}/bin:{os.environ['PATH']}")
    jar = tmp_path / "x.jar"
    shutil.copy(next(Path(pyspark.__file__).parent.glob("jars/commons-lang3-*.jar")), jar)
    archive = tmp_path / "classes.jsa"
    # Loading a class of the jar records the jar in the archive (the class has no main method).
    subprocess.run([java, f"-XX:ArchiveClassesAtExit={archive}", "-cp", str(jar),
                    "org.apache.commons.lang3.ArrayUtils"], capture_output=True)
    assert archive.is_file()
    os.utime(jar, (1_000_000_000, 1_000_000_000))  # as a reinstall leaves it

    def output(*options: str) -> tuple[int, str]:
        run = subprocess.run([java, *options, "-cp", str(jar), "-version"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return run.returncode, run.stdout

    assert "Unable to use shared archive" in output(f"-XX:SharedArchiveFile={archive}")[1]
    returncode, quiet = output(*archive_options(archive))
    assert returncode == 0
    assert quiet.splitlines()[0].startswith(("openjdk version", "java version"))
    assert "archive" not in quiet.lower()


def test_local_driver_maps_the_class_archive_when_built(spark):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = set(runtime.getInputArguments())
    assert set(local_driver_java_options().split()) <= arguments
    assert (f"-XX:SharedArchiveFile={ARCHIVE}" in arguments) == ARCHIVE.is_file()


def test_a_class_loads_in_the_background_and_a_missing_one_is_ignored(spark, monkeypatch):
    spark.sparkContext._jvm.java.lang.Class.forName(CASE_MAPPINGS_CLASS)  # still there in this Spark
    raised = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    threads = [load_class_in_background(spark, name) for name in (CASE_MAPPINGS_CLASS, "org.example.Missing")]
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert raised == []
