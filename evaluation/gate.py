"""The promotion gate: pure functions of two evaluation reports and a policy (no MLflow, no I/O but
``load_policy``).

A report is what ``evaluation.evaluate.evaluate_model`` returns::

    {"tasks": {task: {"roc_auc": float | None, "n": int, "positives": int, ...}},
     "macro": {...}, "micro": {...}, "data": {"manifest_digest": ..., "split": ...}, "complete": true}

Rules (``decide``), in order:

1. The candidate's evaluation must be complete and cover every task of the evaluation data
   (``expected_tasks``); otherwise it is never promoted.
2. A task *counts* only with enough support: ``n >= min_task_rows``, ``positives >= min_task_positives``
   and ``negatives >= min_task_negatives`` (and a ROC AUC). Unsupported tasks are listed but neither
   help nor block. With no supported task at all nothing is promoted.
3. Floors: the candidate's macro ROC AUC over its supported tasks must be >= ``macro_floor``; with
   ``task_floor`` set, every supported task must reach it too.
4. No champion yet (the first model ever): promoted when the floors hold.
5. Against the champion (evaluated on the same data and split), over the supported tasks that both
   have: macro(candidate) - macro(champion) must be >= ``min_delta_macro_auc`` **and** > 0, and no
   task may lose more than ``max_task_auc_drop``. A tie (equal macro AUC, within 1e-9) keeps the
   champion: no churn without a gain. Tasks the champion does not know are checked against the
   floors only.

That is the ``whole`` rollout: one verdict for the model. The ``per_segment`` rollout (the default)
decides each segment on its own (evaluation/segment_gate.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.config_file import read_yaml_mapping, reject_unknown_keys, typed_numbers
from features.errors import UserError

TIE_TOLERANCE = 1e-9
ROLLOUTS = ("per_segment", "whole")


@dataclass(frozen=True)
class GatePolicy:
    # per_segment: the candidate takes the segments it wins (evaluation/segment_gate.py); whole: all or none
    rollout: str = "per_segment"
    # per segment: the lower bound of the paired ROC AUC gain over the serving version must exceed this
    min_delta_task_auc: float = 0.0
    # the paired bootstrap of each segment's gain: resamples and the two-sided confidence of its interval
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    # the candidate's macro ROC AUC must beat the champion's by at least this much (and by more than a tie)
    min_delta_macro_auc: float = 0.0
    # no supported task may lose more ROC AUC than this against the champion
    max_task_auc_drop: float = 0.01
    # support for a task to count (test split of the evaluation data)
    min_task_rows: int = 100
    min_task_positives: int = 10
    min_task_negatives: int = 10
    # absolute floors; 0.55 = clearly better than chance, yet low enough for the demo's first model to be promoted
    macro_floor: float = 0.55
    task_floor: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.rollout in ROLLOUTS, f"rollout must be one of {', '.join(ROLLOUTS)}, got {self.rollout!r}"),
            (self.min_delta_task_auc >= 0, "min_delta_task_auc must be >= 0"),
            (self.bootstrap_resamples >= 100, "bootstrap_resamples must be >= 100"),
            (0.5 <= self.confidence < 1, "confidence must be in [0.5, 1)"),
            (self.min_delta_macro_auc >= 0, "min_delta_macro_auc must be >= 0"),
            (0 <= self.max_task_auc_drop <= 1, "max_task_auc_drop must be in [0, 1]"),
            (min(self.min_task_rows, self.min_task_positives, self.min_task_negatives) >= 1,
             "min_task_rows, min_task_positives and min_task_negatives must be >= 1"),
            (0 <= self.macro_floor <= 1, "macro_floor must be in [0, 1]"),
            (self.task_floor is None or 0 <= self.task_floor <= 1, "task_floor must be null or in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"policy: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


POLICY_FIELDS = {f.name: f for f in dataclasses.fields(GatePolicy)}


def load_policy(path: str | Path | None = None, **overrides: Any) -> GatePolicy:
    """The policy of a YAML file (every key optional, see configs/promotion.yaml), then ``overrides``."""
    values = read_yaml_mapping(path, "policy", "gate keys") if path else {}
    values.update(overrides)
    reject_unknown_keys(values, POLICY_FIELDS, "policy")
    values = typed_numbers(values, POLICY_FIELDS, "policy")  # rollout, a string: GatePolicy checks it
    return GatePolicy(**values)


@dataclass
class Decision:
    promote: bool
    reasons: list[str]
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    macro: dict[str, Any] = field(default_factory=dict)
    # per_segment rollout: each segment's verdict, and the version serving each segment after the decision
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    routing: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def auc_of(entry: Mapping[str, Any] | None) -> float | None:
    """A report entry's ROC AUC; None when absent or not computable."""
    if not entry:
        return None
    value = entry.get("roc_auc")
    if value is None:
        return None
    value = float(value)
    return None if value != value else value  # NaN = not computable


def too_few_rows(n: int, positives: int, negatives: int, policy: GatePolicy) -> str:
    """Why a task's rows are too few for the gate to count it; "" when they are enough."""
    if n < policy.min_task_rows:
        return f"{n} rows < {policy.min_task_rows}"
    if positives < policy.min_task_positives:
        return f"{positives} positives < {policy.min_task_positives}"
    if negatives < policy.min_task_negatives:
        return f"{negatives} negatives < {policy.min_task_negatives}"
    return ""


def support(entry: Mapping[str, Any], policy: GatePolicy) -> tuple[bool, str, dict[str, int]]:
    n = int(entry.get("n") or 0)
    positives = int(entry.get("positives") or 0)
    negatives = int(entry["negatives"]) if entry.get("negatives") is not None else n - positives
    counts = {"n": n, "positives": positives, "negatives": negatives}
    why = too_few_rows(n, positives, negatives, policy) or ("no ROC AUC" if auc_of(entry) is None else "")
    return not why, why, counts


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _complete(report: Mapping[str, Any] | None) -> bool:
    return bool(report) and report.get("complete") is True and isinstance(report.get("tasks"), Mapping)


def why_not_judged(candidate: Mapping[str, Any] | None, champion: Mapping[str, Any] | None,
                    expected: list[str]) -> str:
    """Why the reports cannot be judged at all (incomplete, a task missing, other data); "" when they can."""
    if not _complete(candidate):
        return "candidate evaluation is missing or incomplete: never promoted"
    missing = [t for t in expected if t not in candidate["tasks"]]
    if missing:
        return f"candidate evaluation lacks task(s) of the data: {', '.join(missing)}"
    if champion is None:
        return ""
    if not _complete(champion):
        return "champion evaluation is missing or incomplete: cannot compare"
    ours, theirs = candidate.get("data") or {}, champion.get("data") or {}
    for key in ("manifest_digest", "split"):
        if ours.get(key) != theirs.get(key):
            return (f"champion was evaluated on other data ({key} {theirs.get(key)!r} "
                    f"!= {ours.get(key)!r}): cannot compare")
    return ""


def _task_row(task: str, entry: Mapping[str, Any], champion: Mapping[str, Any] | None,
              policy: GatePolicy) -> tuple[dict[str, Any], list[str]]:
    """One task's row (support, ROC AUCs, status) and the reasons it blocks promotion (task floor, drop)."""
    ok, why, counts = support(entry, policy)
    champ = auc_of(champion["tasks"].get(task)) if champion is not None else None
    cand = auc_of(entry)
    row: dict[str, Any] = {"candidate": cand, "champion": champ, **counts, "supported": ok, "status": "ok"}
    if champ is not None and cand is not None:
        row["delta"] = cand - champ
    if not ok:
        row.update(status="unsupported", note=f"ignored: {why}")
        return row, []
    reasons = []
    if policy.task_floor is not None and cand < policy.task_floor:
        row["status"] = "below_floor"
        reasons.append(f"{task}: ROC AUC {cand:.4f} < task floor {policy.task_floor}")
    if champion is None:
        return row, reasons
    if champ is None:
        row["note"] = "new task: the champion has no ROC AUC for it (floors only)"
    elif cand < champ - policy.max_task_auc_drop - TIE_TOLERANCE:
        row["status"] = "drop"
        reasons.append(f"{task}: ROC AUC {cand:.4f} vs champion {champ:.4f} "
                       f"(drop {champ - cand:.4f} > {policy.max_task_auc_drop})")
    return row, reasons


def _task_rows(tasks: Mapping[str, Any], champion: Mapping[str, Any] | None,
               policy: GatePolicy) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """The rows of all tasks (sorted), the supported tasks and the per-task reasons against promotion."""
    per_task: dict[str, dict[str, Any]] = {}
    supported: list[str] = []
    reasons: list[str] = []
    for task in sorted(tasks):
        per_task[task], task_reasons = _task_row(task, tasks[task], champion, policy)
        reasons += task_reasons
        if per_task[task]["supported"]:
            supported.append(task)
    return per_task, supported, reasons


def _compare_macro(per_task: Mapping[str, dict[str, Any]], supported: list[str],
                   policy: GatePolicy) -> tuple[dict[str, Any], list[str]]:
    """The macro comparison with the champion over the supported tasks both have, and why it fails."""
    common = [t for t in supported if per_task[t]["champion"] is not None]
    if not common:
        return {"delta": None}, ["no supported task in common with the champion: cannot compare"]
    cand_common = mean(per_task[t]["candidate"] for t in common)
    champ_common = mean(per_task[t]["champion"] for t in common)
    delta = cand_common - champ_common
    macro = {"candidate_common": cand_common, "champion_common": champ_common, "delta": delta,
             "common_tasks": common}
    if abs(delta) <= TIE_TOLERANCE:
        return macro, [f"tie: macro ROC AUC {cand_common:.4f} == champion's (a tie keeps the champion)"]
    if delta < policy.min_delta_macro_auc - TIE_TOLERANCE or delta < 0:
        return macro, [f"macro ROC AUC {cand_common:.4f} vs champion {champ_common:.4f} "
                       f"(delta {delta:+.4f} < required {policy.min_delta_macro_auc:+.4f})"]
    return macro, []


def _why_promoted(macro: Mapping[str, Any], first_model: bool, policy: GatePolicy) -> str:
    """The one reason of a promotion: the floor a first model reached, or its gain over the champion."""
    if first_model:
        return f"first model: macro ROC AUC {macro['candidate']:.4f} >= floor {policy.macro_floor}"
    return (f"macro ROC AUC {macro['candidate_common']:.4f} vs champion {macro['champion_common']:.4f} "
            f"(delta {macro['delta']:+.4f}), no task dropped more than {policy.max_task_auc_drop}")


def decide(candidate: Mapping[str, Any] | None, champion: Mapping[str, Any] | None, policy: GatePolicy,
           expected_tasks: Iterable[str]) -> Decision:
    """Whether ``candidate`` replaces ``champion`` (None: there is no champion yet); see the module doc."""
    why_not = why_not_judged(candidate, champion, sorted(expected_tasks))
    if why_not:
        return Decision(False, [why_not])
    per_task, supported, task_reasons = _task_rows(candidate["tasks"], champion, policy)
    if not supported:
        return Decision(False, ["no task has enough support to judge (min_task_rows "
                                f"{policy.min_task_rows}, positives {policy.min_task_positives}, negatives "
                                f"{policy.min_task_negatives})"], per_task)

    # reasons: macro first (the short reason is the first), then per task
    macro: dict[str, Any] = {"candidate": mean(per_task[t]["candidate"] for t in supported), "tasks": supported}
    reasons: list[str] = []
    if macro["candidate"] < policy.macro_floor:
        reasons.append(f"macro ROC AUC {macro['candidate']:.4f} < floor {policy.macro_floor}")
    if champion is not None:
        comparison, macro_reasons = _compare_macro(per_task, supported, policy)
        macro.update(comparison)
        reasons += macro_reasons
    reasons += task_reasons
    if reasons:
        return Decision(False, reasons, per_task, macro)
    return Decision(True, [_why_promoted(macro, champion is None, policy)], per_task, macro)
