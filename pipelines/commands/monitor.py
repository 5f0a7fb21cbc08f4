"""`adsrel monitor`: judge a day's scores per segment (drift, volume, rejections)."""

from __future__ import annotations

import argparse
import json

ALERT_EXIT = 4


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "monitor", help="judge a scored output per segment: drift, volume and rejections",
        description="Judge the scored output SCORED (adsrel score's layout) per segment: the population stability "
        "index (PSI) of its scores against the reference of the version that scored the segment (its scores on its "
        "evaluation split, kept by its evaluation run) and, with --previous, against the previous output; the "
        "segment's volume against the previous output; the rejected share of the input. Thresholds: --policy "
        "(configs/monitoring.yaml's keys). The report JSON is printed on stdout and written to --report; one line "
        "per alerting measure on stderr; the day is logged as a run of the MLflow experiment "
        "ads-relevance-monitoring (metrics monitor/<task>/psi, rows, mean_score and monitor/rejected_share, "
        "with the scored day as the step). Scores are never touched. MLFLOW_TRACKING_URI or ./mlflow.db.",
        epilog=f"exit codes: 0 ok or warn, {ALERT_EXIT} alert (a segment or the rejected share crossed an alert "
        "threshold), 2 user error (a missing or incomplete output, a bad policy).",
    )
    p.add_argument("--scored", required=True, metavar="DIR", help="output directory of adsrel score")
    p.add_argument("--previous", metavar="DIR", help="the previous scored output, for volume and day-over-day PSI")
    p.add_argument("--policy", metavar="YAML", help="thresholds (every key optional; see configs/monitoring.yaml)")
    p.add_argument("--report", metavar="JSON", help="also write the report here")
    p.add_argument("--no-mlflow", dest="mlflow", action="store_false",
                   help="do not log the day to the MLflow experiment ads-relevance-monitoring")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from features.progress import log
    from pipelines.monitoring.job import run_monitor
    from pipelines.monitoring.policy import load_monitor_policy

    report = run_monitor(args.scored, previous=args.previous, policy=load_monitor_policy(args.policy),
                         report_path=args.report)
    if args.mlflow:
        from pipelines.monitoring.tracking import log_monitor

        report["mlflow_run_id"] = log_monitor(report)
    print(json.dumps(report, sort_keys=True, default=str))
    for task, row in report["tasks"].items():
        psi = "-" if row["psi"] is None else f"{row['psi']:.3f}"
        log("monitor", f"{task}: {row['status']}, {row['rows']} rows, PSI {psi}"
            + (f"; {'; '.join(row['reasons'])}" if row["reasons"] else ""))
    for line in report["alerts"]:
        log("monitor", f"alert: {line}")
    log("monitor", f"{report['status']}: {len(report['alerts'])} alert(s)")
    return ALERT_EXIT if report["status"] == "alert" else 0
