"""benchmarks.prepare_stages sums task metrics per stage from a Spark event log."""

from __future__ import annotations

import json

from benchmarks.prepare_stages import stage_table


def test_stage_table_sums_tasks_per_stage_and_skips_other_files(tmp_path):
    app = tmp_path / "eventlog_v2_local-1"
    app.mkdir()
    task = {"Event": "SparkListenerTaskEnd", "Stage ID": 3, "Stage Attempt ID": 0,
            "Task Metrics": {"Executor Run Time": 2000, "Executor CPU Time": 1_500_000_000, "JVM GC Time": 100,
                             "Shuffle Write Metrics": {"Shuffle Bytes Written": 5_000_000},
                             "Shuffle Read Metrics": {"Remote Bytes Read": 0, "Local Bytes Read": 1_000_000},
                             "Disk Bytes Spilled": 0, "Input Metrics": {"Records Read": 10},
                             "Output Metrics": {"Records Written": 4}}}
    done = {"Event": "SparkListenerStageCompleted",
            "Stage Info": {"Stage ID": 3, "Stage Attempt ID": 0, "Stage Name": "write",
                           "Submission Time": 1_000, "Completion Time": 4_500}}
    (app / "events_1_local-1").write_text("\n".join(json.dumps(e) for e in (task, task, done)) + "\n")
    (app / ".appstatus_local-1.crc").write_bytes(b"\x00\x01not json")
    (row,) = stage_table(tmp_path)
    assert (row["stage"], row["name"], row["tasks"], row["wall_s"]) == (3, "write", 2, 3.5)
    assert (row["run_s"], row["cpu_s"], row["gc_s"]) == (4.0, 3.0, 0.2)
    shuffle = (row["shuffle_write_mb"], row["shuffle_read_mb"])
    assert shuffle == (10.0, 2.0) and (row["records_in"], row["records_out"]) == (20, 8)
