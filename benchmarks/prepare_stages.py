"""Where `adsrel prepare`'s time goes: one run with Spark's event log on, summed per stage.

For each Spark stage: wall seconds, tasks, summed task run time and executor CPU time (run time well
above CPU time means the task waited: on the Arrow UDF's Python worker, or on a busy machine), GC,
shuffle bytes written and read, spill, and records read and written. Complements
benchmarks.prepare_throughput, which measures the whole job.

Run: python -m benchmarks.prepare_stages --input RAW_LOGS [--master local[2]] [--workdir DIR]
(raw logs from e.g. `adsrel synth --output RAW_LOGS --rows 1000000 --master local[2]`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def stage_table(event_log_dir: Path) -> list[dict]:
    """Per-stage sums of the task metrics in an (uncompressed) Spark event log directory."""
    stages: dict[tuple[int, int], dict] = {}
    for path in sorted(event_log_dir.rglob("events_*")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerStageCompleted":
                info = event["Stage Info"]
                row = stages.setdefault((info["Stage ID"], info["Stage Attempt ID"]), {})
                row["name"] = info["Stage Name"]
                row["wall_s"] = (info.get("Completion Time", 0) - info.get("Submission Time", 0)) / 1000
            elif kind == "SparkListenerTaskEnd":
                metrics = event.get("Task Metrics") or {}
                row = stages.setdefault((event["Stage ID"], event["Stage Attempt ID"]), {})
                written = metrics.get("Shuffle Write Metrics", {})
                read = metrics.get("Shuffle Read Metrics", {})
                for key, value in {
                    "tasks": 1,
                    "run_s": metrics.get("Executor Run Time", 0) / 1000,
                    "cpu_s": metrics.get("Executor CPU Time", 0) / 1e9,
                    "gc_s": metrics.get("JVM GC Time", 0) / 1000,
                    "shuffle_write_mb": written.get("Shuffle Bytes Written", 0) / 1e6,
                    "shuffle_read_mb": (read.get("Remote Bytes Read", 0) + read.get("Local Bytes Read", 0)) / 1e6,
                    "spill_mb": metrics.get("Disk Bytes Spilled", 0) / 1e6,
                    "records_in": (metrics.get("Input Metrics") or {}).get("Records Read", 0),
                    "records_out": (metrics.get("Output Metrics") or {}).get("Records Written", 0),
                }.items():
                    row[key] = row.get(key, 0) + value
    return [{"stage": stage, **row} for (stage, _), row in sorted(stages.items())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="raw logs (Parquet, JSON Lines or CSV)")
    parser.add_argument("--task-map", default="configs/tasks.yaml")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/adsrel-prepare-stages"))
    args = parser.parse_args()

    from features.errors import UserError
    from features.task_map import load_task_map
    from pipelines.data.prepare import run_prepare
    from pipelines.data.prepare_config import PrepareConfig
    from pipelines.spark import build_session

    shutil.rmtree(args.workdir, ignore_errors=True)
    events = args.workdir / "events"
    events.mkdir(parents=True)
    spark = build_session("adsrel-prepare-stages", args.master, {
        "spark.ui.enabled": "false", "spark.eventLog.enabled": "true", "spark.eventLog.compress": "false",
        "spark.eventLog.dir": str(events.resolve())})
    started = time.perf_counter()
    try:
        run_prepare(spark, [args.input], str(args.workdir / "prepared"), load_task_map(args.task_map), PrepareConfig())
    except UserError as exc:
        print(f"prepare-stages: {exc}", file=sys.stderr)
        return 2
    job_s = time.perf_counter() - started
    spark.stop()
    print(f"prepare job {job_s:.1f} s, master {args.master}")
    print(f"{'stage':>5} {'wall s':>7} {'tasks':>5} {'run s':>7} {'cpu s':>7} {'gc s':>5} {'shuf W MB':>9} "
          f"{'shuf R MB':>9} {'spill MB':>8} {'rec in':>9} {'rec out':>9}  name")
    for r in stage_table(events):
        print(f"{r['stage']:>5} {r.get('wall_s', 0):>7.1f} {r.get('tasks', 0):>5} {r.get('run_s', 0):>7.1f} "
              f"{r.get('cpu_s', 0):>7.1f} {r.get('gc_s', 0):>5.1f} {r.get('shuffle_write_mb', 0):>9.0f} "
              f"{r.get('shuffle_read_mb', 0):>9.0f} {r.get('spill_mb', 0):>8.0f} {r.get('records_in', 0):>9} "
              f"{r.get('records_out', 0):>9}  {r.get('name', '?')[:50]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
