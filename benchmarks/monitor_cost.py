"""The monitor's own cost next to scoring's, on the score benchmark's 20,000 candidates.

Scores the candidates of benchmarks/score_throughput.py with its model (`adsrel score --engine local`,
twice: a day and its previous day), then runs `adsrel monitor` on the second against the first
(``--repeats`` times, in this process after one warm-up, MLflow logging included on a temporary sqlite
store) and reports the monitor's median seconds as a fraction of the scoring run's (target <= 2%).

Run: python -m benchmarks.monitor_cost [--repeats 5] [--workdir DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.figures import emit
from benchmarks.score_throughput import make_inputs

TARGET_FRACTION = 0.02


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/adsrel-bench-score"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    candidates, model = make_inputs(args.workdir, args.rows, "realistic")
    with tempfile.TemporaryDirectory(prefix="adsrel-bench-monitor-") as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        from pipelines.monitoring.job import run_monitor
        from pipelines.monitoring.tracking import log_monitor
        from pipelines.scoring.job import run_score

        days = [run_score(str(model), [str(candidates)], str(args.workdir / f"monitor-day{d}"), engine="local")
                for d in (1, 2)]
        seconds = []
        for _ in range(args.repeats + 1):  # the first warms imports and the store up
            started = time.perf_counter()
            report = run_monitor(args.workdir / "monitor-day2", previous=args.workdir / "monitor-day1")
            log_monitor(report)
            seconds.append(time.perf_counter() - started)
    scoring = days[1]["seconds"]
    figures = {"rows": days[1]["input_rows"], "scoring_seconds": scoring,
               "monitor_seconds": [round(s, 3) for s in seconds[1:]],
               "monitor_median_seconds": round(statistics.median(seconds[1:]), 3),
               "first_monitor_seconds": round(seconds[0], 3)}
    figures["fraction"] = round(figures["monitor_median_seconds"] / scoring, 4)
    figures["target_met"] = figures["fraction"] <= TARGET_FRACTION
    emit(figures, args.json)
    return 0 if figures["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
