"""`adsrel monitor`: a scored output (adsrel score's layout) judged per segment against the reference of
the version that scored each segment and, when given, the previous scored output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.drift import distribution
from features.candidates import read_scored_rows
from features.errors import UserError
from pipelines.monitoring.judge import judge
from pipelines.monitoring.policy import MonitorPolicy
from pipelines.monitoring.reference import version_reference

SUMMARY = "summary.json"  # adsrel score's marker: a complete output


def read_scored(directory: str | Path) -> dict[str, Any]:
    """A complete scored output: its summary, and per segment the distribution of its scores and the
    version that scored it (a routed champion's source)."""
    directory = Path(directory)
    try:
        summary = json.loads((directory / SUMMARY).read_text())
    except FileNotFoundError:
        raise UserError(f"{directory} is not a complete scored output (no {SUMMARY}: the run failed or is "
                        "still running)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {directory / SUMMARY}: {exc}") from None
    frame = read_scored_rows(directory / "scores", ["task", "score", "source_version"]).to_pandas()
    tasks = {}
    for task, rows in frame.groupby("task", sort=True):
        sources = rows["source_version"].dropna()
        tasks[str(task)] = {**distribution(rows["score"].to_numpy()),
                            "source_version": str(sources.mode().iloc[0]) if len(sources) else None}
    return {"summary": summary, "tasks": tasks}


def references(client, tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Per segment, the reference distribution of the version that scored it (None where there is none)."""
    by_version: dict[str, dict[str, Any] | None] = {}
    out: dict[str, dict[str, Any] | None] = {}
    for task, today in tasks.items():
        version = today.get("source_version")
        if version is not None and version not in by_version:
            by_version[version] = version_reference(client, version)
        ref = by_version.get(version) if version is not None else None
        out[task] = (ref or {}).get("tasks", {}).get(task)
    return out


def run_monitor(scored: str | Path, *, previous: str | Path | None = None, policy: MonitorPolicy | None = None,
                report_path: str | Path | None = None) -> dict[str, Any]:
    """The report of ``scored`` (see pipelines/monitoring/judge.py), written to ``report_path`` if given."""
    import mlflow

    policy = policy or MonitorPolicy()
    today = read_scored(scored)
    before = read_scored(previous) if previous else None
    summary = today["summary"]
    refs = references(mlflow.MlflowClient(), today["tasks"])
    report = judge(today["tasks"], refs, before["tasks"] if before else None, summary.get("rejected") or {},
                   int(summary.get("input_rows") or 0), policy)
    report.update(scored=str(Path(scored).resolve()), previous=str(Path(previous).resolve()) if previous else None,
                  scored_at=summary.get("scored_at"), model=summary.get("model"))
    for task, row in report["tasks"].items():
        row["source_version"] = (today["tasks"].get(task) or {}).get("source_version")
        # the counts per fixed bin behind the PSIs: the report alone can draw them
        row["counts"] = {"today": (today["tasks"].get(task) or {}).get("counts"),
                         "reference": (refs.get(task) or {}).get("counts"),
                         "previous": ((before or {}).get("tasks", {}).get(task) or {}).get("counts")}
    if report_path:
        try:
            Path(report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(report_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise UserError(f"cannot write the report {report_path}: {exc.strerror or exc}") from None
    return report
