"""The local driver JVM's settings: collector, JIT thresholds, class archive."""

import os
import shutil
import subprocess

from pipelines.class_archive import ARCHIVE, archive_options
from pipelines.spark import local_driver_java_options


def test_local_driver_runs_the_throughput_collector(spark):
    management = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    collectors = {bean.getName() for bean in management.getGarbageCollectorMXBeans()}
    assert collectors == {"PS Scavenge", "PS MarkSweep"}  # G1 would be "G1 Young Generation", ...


def test_local_driver_jit_compiles_only_hot_methods_late(spark):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = set(runtime.getInputArguments())
    assert {"-XX:Tier4InvocationThreshold=50000", "-XX:Tier3InvocationThreshold=2000"} <= arguments


def test_class_archive_is_named_only_when_it_exists(tmp_path):
    archive = tmp_path / "classes.jsa"
    assert archive_options(archive) == []  # naming a missing file would turn off the JDK's own archive
    archive.write_bytes(b"not an archive")
    assert archive_options(archive)[0] == f"-XX:SharedArchiveFile={archive}"


def test_an_archive_the_jvm_cannot_use_does_not_stop_it(tmp_path):
    archive = tmp_path / "classes.jsa"
    archive.write_bytes(b"\0" * 4096)  # not an archive of this JVM build
    java = shutil.which("java", path=f"{os.environ.get('JAVA_HOME', '')}/bin:{os.environ['PATH']}")
    result = subprocess.run([java, *archive_options(archive), "-version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stderr.splitlines()[0].startswith(("openjdk version", "java version"))
    assert "archive" not in result.stderr.lower()


def test_local_driver_maps_the_class_archive_when_built(spark):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = set(runtime.getInputArguments())
    assert set(local_driver_java_options().split()) <= arguments
    assert (f"-XX:SharedArchiveFile={ARCHIVE}" in arguments) == ARCHIVE.is_file()
