"""A class-data-sharing archive of the classes a local Spark job loads, built once per environment.

A fresh driver JVM loads, parses and verifies several thousand Spark, Scala, Hadoop and Parquet
classes while the first job runs, on the same cores as the tasks. JDK 13+ can dump the classes one
run loaded into a dynamic CDS archive (-XX:ArchiveClassesAtExit) and map them from that file in
later runs (-XX:SharedArchiveFile, see :func:`pipelines.spark.archive_options`). `make install`
builds one by running a small synth + prepare; without it (or with a stale one: another JVM, another
pyspark) everything runs as before, the JVM ignores a stale archive by itself.

Build or rebuild: ``python -m pipelines.class_archive`` (about a minute; the dump at exit is most of
it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.spark import ARCHIVE, LOCAL_DRIVER_JAVA_OPTIONS, QUIET_ARCHIVE, build_session


def _workload(workdir: Path, dump_to: Path) -> None:
    """A small synth + prepare in a driver JVM that dumps the classes it loaded when it exits."""
    from pipelines.data.prepare import run_prepare
    from pipelines.data.prepare_config import PrepareConfig
    from pipelines.data.synth import synth_logs, write_logs

    options = f"{LOCAL_DRIVER_JAVA_OPTIONS} -XX:ArchiveClassesAtExit={dump_to} {' '.join(QUIET_ARCHIVE)}"
    spark = build_session(
        "adsrel-class-archive", "local[2]",
        {"spark.driver.extraJavaOptions": options, "spark.ui.enabled": "false"},
    )
    raw = str(workdir / "raw")
    write_logs(synth_logs(spark, 5_000, seed=0), raw)
    run_prepare(spark, [raw], str(workdir / "prepared"), None, PrepareConfig(), task_by="market,vertical")
    print(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid(), flush=True)
    spark.stop()  # the JVM exits after this process does, and writes the archive as it exits


def _wait_for_exit(pid: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the driver JVM (pid {pid}) did not exit within {timeout_s:.0f} s")
        time.sleep(0.5)


def build_archive(archive: Path = ARCHIVE) -> Path:
    """Runs the workload in a child process and moves its archive into place atomically."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="adsrel-class-archive-") as tmp:
        dump = Path(tmp) / "classes.jsa"
        child = subprocess.run(
            [sys.executable, "-m", "pipelines.class_archive", "--workload", tmp, str(dump)],
            capture_output=True, text=True,
        )
        if child.returncode != 0:
            raise RuntimeError(f"the class archive workload failed:\n{child.stderr[-3000:]}")
        _wait_for_exit(int(child.stdout.split()[-1]))
        if not dump.is_file():
            raise RuntimeError("the JVM wrote no class archive (it needs JDK 13 or later)")
        staged = archive.with_suffix(".tmp")
        shutil.move(dump, staged)  # the temporary directory may be on another file system
        os.replace(staged, archive)
    return archive


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--workload"]:
        _workload(Path(args[1]), Path(args[2]))
        return 0
    started = time.time()
    print(f"adsrel: building the Spark class archive {ARCHIVE} (about a minute) ...", file=sys.stderr)
    try:
        build_archive()
    except RuntimeError as exc:
        print(f"adsrel: no class archive, Spark jobs start slower: {exc}", file=sys.stderr)
        return 1
    print(f"adsrel: class archive built in {time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
