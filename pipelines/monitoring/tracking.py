"""A monitored day in MLflow, for analysts: a run of the ads-relevance-monitoring experiment whose
metrics are logged with the scored day as the step, so the UI draws each segment's series over days."""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from evaluation.tracking import MONITORING_EXPERIMENT, experiment_id, log_day_metrics

REPORT_ARTIFACT = "monitor_report.json"
PLOTS_DIR = "plots"


def scored_day(scored_at: str | None) -> date:
    """The day of a scored output's scored_at (today without one)."""
    return datetime.fromisoformat(scored_at).date() if scored_at else date.today()


def metric_items(report: dict[str, Any]) -> dict[str, float]:
    """``monitor/<task>/psi``, ``/psi_previous``, ``/rows``, ``/mean_score`` and ``monitor/rejected_share``
    (the figures the report has)."""
    out: dict[str, float] = {}
    for task, row in report["tasks"].items():
        for key in ("psi", "psi_previous", "rows", "mean_score"):
            if row.get(key) is not None:
                out[f"monitor/{task}/{key}"] = float(row[key])
    if report["rejected"]["share"] is not None:
        out["monitor/rejected_share"] = float(report["rejected"]["share"])
    return out


def log_monitor(report: dict[str, Any]) -> str:
    """Record ``report`` as a run of the monitoring experiment; returns its id."""
    import mlflow

    day = scored_day(report.get("scored_at"))
    model = report.get("model") or {}
    with mlflow.start_run(experiment_id=experiment_id(MONITORING_EXPERIMENT), run_name=f"monitor-{day}") as run:
        mlflow.set_tags({"stage": "monitor", "adsrel.status": report["status"], "adsrel.scored_date": str(day),
                         "adsrel.model_version": str(model.get("version")), "adsrel.scored": report["scored"]})
        log_day_metrics(metric_items(report), day)
        mlflow.log_dict(report, REPORT_ARTIFACT)
        with tempfile.TemporaryDirectory(prefix="adsrel-monitor-plots-") as tmp:
            if write_plots(Path(tmp), report):
                mlflow.log_artifacts(tmp, PLOTS_DIR)
        return run.info.run_id


def write_plots(directory: Path, report: dict[str, Any]) -> list[Path]:
    """For every segment that warns or alerts, its distribution today against the reference and the
    previous day (``<task>.png``)."""
    from evaluation.plots import distribution_figure, save

    written = []
    for task, row in sorted(report["tasks"].items()):
        counts = row.get("counts") or {}
        if row["status"] not in ("warn", "alert") or not counts.get("today"):
            continue
        dists = {name: {"counts": c, "rows": int(sum(c))} if c else None for name, c in counts.items()}
        title = f"{row['status']}: " + "; ".join(row["reasons"])
        written.append(save(distribution_figure(task, dists["today"], {"reference": dists["reference"],
                                                                      "previous day": dists["previous"]}, title),
                            directory / f"{task}.png"))
    return written
