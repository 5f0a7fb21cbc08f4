"""Judging a day's scores per segment: pure functions of distributions (evaluation/drift.py), counts and
the thresholds (pipelines/monitoring/policy.py).

Per segment (task), each measure gets ok, warn or alert, and the segment the worst of them:

- ``psi``: its scores today against the reference of the version that scored them (its scores on its
  evaluation split); judged when today and the reference have ``min_rows`` rows, else the segment has
  ``no_verdict`` on drift (said in ``reasons``);
- ``psi_previous``: against the previous day's scores, under the same condition (both days);
- ``volume_change``: |rows / previous rows - 1|, judged when the previous day had ``min_rows`` rows (a
  segment that vanished today alerts here).

Overall: the rejected share (rejected rows over input rows) is judged on its own; the run's status is
the worst of it and of every segment. A segment with no verdict on any measure is ``no_verdict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluation.drift import psi
from pipelines.monitoring.policy import MonitorPolicy

LEVELS = ("ok", "warn", "alert")


def level(value: float | None, warn: float, alert: float) -> str | None:
    """ok, warn or alert for ``value`` against its thresholds (None: not judged)."""
    if value is None:
        return None
    return "alert" if value > alert else "warn" if value > warn else "ok"


def worst(levels: list[str | None]) -> str:
    judged = [x for x in levels if x in LEVELS]
    return max(judged, key=LEVELS.index) if judged else "no_verdict"


def judge_segment(today: Mapping[str, Any] | None, reference: Mapping[str, Any] | None,
                  previous: Mapping[str, Any] | None, policy: MonitorPolicy) -> dict[str, Any]:
    """One segment's figures and status; ``today``, ``reference``, ``previous``: distributions
    (evaluation.drift.distribution) or None where there is none."""
    rows = (today or {}).get("rows", 0)
    previous_rows = (previous or {}).get("rows", 0) if previous is not None else None
    row: dict[str, Any] = {"rows": rows, "mean_score": (today or {}).get("mean"),
                           "share_above_0.5": (today or {}).get("share_above_0.5"), "previous_rows": previous_rows,
                           "psi": None, "psi_previous": None, "volume_change": None, "reasons": []}
    enough = rows >= policy.min_rows
    if not enough:
        row["reasons"].append(f"{rows} rows < min_rows {policy.min_rows}: no drift verdict")
    elif reference is None:
        row["reasons"].append("no reference distribution for the version that scored it")
    elif reference["rows"] < policy.min_rows:  # a small reference is as noisy as a small day
        row["reasons"].append(f"its reference has {reference['rows']} rows < min_rows {policy.min_rows}: "
                              "no drift verdict against it")
    else:
        row["psi"] = psi(reference["counts"], today["counts"])
    if enough and previous_rows is not None and previous_rows >= policy.min_rows:
        row["psi_previous"] = psi(previous["counts"], today["counts"])
    if previous_rows is not None and previous_rows >= policy.min_rows:
        row["volume_change"] = abs(rows / previous_rows - 1)
    levels = {"psi": level(row["psi"], policy.psi_warn, policy.psi_alert),
              "psi_previous": level(row["psi_previous"], policy.psi_warn, policy.psi_alert),
              "volume_change": level(row["volume_change"], policy.volume_change_warn, policy.volume_change_alert)}
    row["status"] = worst(list(levels.values()))
    row["reasons"] += [f"{name} {row[name]:.3f} ({lvl})" for name, lvl in levels.items() if lvl in ("warn", "alert")]
    return row


def judge(today: Mapping[str, Mapping[str, Any]], references: Mapping[str, Mapping[str, Any] | None],
          previous: Mapping[str, Mapping[str, Any]] | None, rejected: Mapping[str, int], input_rows: int,
          policy: MonitorPolicy) -> dict[str, Any]:
    """The report of one day: per segment (every segment of today, of the previous day and of the
    references) and overall; ``alerts`` holds one line per alerting measure."""
    tasks = sorted(set(today) | set(previous or {}))
    segments = {t: judge_segment(today.get(t), references.get(t), (previous or {}).get(t, {"rows": 0, "counts": None})
                                 if previous is not None else None, policy) for t in tasks}
    share = sum(rejected.values()) / input_rows if input_rows else None
    rejected_status = level(share, policy.rejected_share_warn, policy.rejected_share_alert)
    alerts = [f"rejected share {share:.3f} > {policy.rejected_share_alert} ("
              + ", ".join(f"{r} {n}" for r, n in sorted(rejected.items(), key=lambda kv: -kv[1])) + ")"
              ] if rejected_status == "alert" else []
    for task, row in segments.items():
        alerts += [f"{task}: {reason}" for reason in row["reasons"] if reason.endswith("(alert)")]
    return {"status": worst([rejected_status, *(s["status"] for s in segments.values())]),
            "rejected": {"share": share, "by_reason": dict(rejected), "status": rejected_status or "no_verdict"},
            "input_rows": input_rows, "tasks": segments, "alerts": alerts, "policy": policy.to_dict()}
