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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.config_file import read_yaml_mapping, reject_unknown_keys
from features.errors import UserError

TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GatePolicy:
    # the candidate's macro ROC AUC must beat the champion's by at least this much (and by more than a tie)
    min_delta_macro_auc: float = 0.0
    # no supported task may lose more ROC AUC than this against the champion
    max_task_auc_drop: float = 0.01
    # support for a task to count (test split of the evaluation data)
    min_task_rows: int = 100
    min_task_positives: int = 10
    min_task_negatives: int = 10
    # absolute floors; 0.55 = clearly better than chance, below what a 60-step demo model reaches (~0.6-0.7)
    macro_floor: float = 0.55
    task_floor: float | None = None

    def __post_init__(self) -> None:
        checks = [
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
    for key, value in list(values.items()):
        kind = POLICY_FIELDS[key].type
        if value is None and "None" in kind:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"policy: {key} must be a number, got {value!r}")
        if kind == "int":
            if value != int(value):
                raise UserError(f"policy: {key} must be an integer, got {value!r}")
            values[key] = int(value)
        else:
            values[key] = float(value)
    return GatePolicy(**values)


@dataclass
class Decision:
    promote: bool
    reasons: list[str]
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    macro: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _auc(entry: Mapping[str, Any] | None) -> float | None:
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


def _support(entry: Mapping[str, Any], policy: GatePolicy) -> tuple[bool, str, dict[str, int]]:
    n = int(entry.get("n") or 0)
    positives = int(entry.get("positives") or 0)
    negatives = int(entry["negatives"]) if entry.get("negatives") is not None else n - positives
    counts = {"n": n, "positives": positives, "negatives": negatives}
    why = too_few_rows(n, positives, negatives, policy) or ("no ROC AUC" if _auc(entry) is None else "")
    return not why, why, counts


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _complete(report: Mapping[str, Any] | None) -> bool:
    return bool(report) and report.get("complete") is True and isinstance(report.get("tasks"), Mapping)


def decide(candidate: Mapping[str, Any] | None, champion: Mapping[str, Any] | None, policy: GatePolicy,
           expected_tasks: Iterable[str]) -> Decision:
    """Whether ``candidate`` replaces ``champion`` (None: there is no champion yet); see the module doc."""
    expected = sorted(expected_tasks)
    if not _complete(candidate):
        return Decision(False, ["candidate evaluation is missing or incomplete: never promoted"])
    tasks = candidate["tasks"]
    missing = [t for t in expected if t not in tasks]
    if missing:
        return Decision(False, [f"candidate evaluation lacks task(s) of the data: {', '.join(missing)}"])
    if champion is not None:
        if not _complete(champion):
            return Decision(False, ["champion evaluation is missing or incomplete: cannot compare"])
        ours, theirs = candidate.get("data") or {}, champion.get("data") or {}
        for key in ("manifest_digest", "split"):
            if ours.get(key) != theirs.get(key):
                return Decision(False, [f"champion was evaluated on other data ({key} {theirs.get(key)!r} "
                                        f"!= {ours.get(key)!r}): cannot compare"])

    per_task: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []  # macro first (the short reason is the first), then per task
    task_reasons: list[str] = []
    supported: list[str] = []
    for task in sorted(tasks):
        entry = tasks[task]
        ok, why, counts = _support(entry, policy)
        champ = _auc((champion or {}).get("tasks", {}).get(task)) if champion is not None else None
        cand = _auc(entry)
        row: dict[str, Any] = {"candidate": cand, "champion": champ, **counts, "supported": ok, "status": "ok"}
        if champ is not None and cand is not None:
            row["delta"] = cand - champ
        if not ok:
            row["status"] = "unsupported"
            row["note"] = f"ignored: {why}"
        else:
            supported.append(task)
            if policy.task_floor is not None and cand < policy.task_floor:
                row["status"] = "below_floor"
                task_reasons.append(f"{task}: ROC AUC {cand:.4f} < task floor {policy.task_floor}")
            if champion is not None:
                if champ is None:
                    row["note"] = "new task: the champion has no ROC AUC for it (floors only)"
                elif cand < champ - policy.max_task_auc_drop - TIE_TOLERANCE:
                    row["status"] = "drop"
                    task_reasons.append(f"{task}: ROC AUC {cand:.4f} vs champion {champ:.4f} "
                                   f"(drop {champ - cand:.4f} > {policy.max_task_auc_drop})")
        per_task[task] = row

    if not supported:
        return Decision(False, ["no task has enough support to judge (min_task_rows "
                                f"{policy.min_task_rows}, positives {policy.min_task_positives}, negatives "
                                f"{policy.min_task_negatives})"], per_task)

    macro_candidate = _mean(per_task[t]["candidate"] for t in supported)
    macro: dict[str, Any] = {"candidate": macro_candidate, "tasks": supported}
    if macro_candidate < policy.macro_floor:
        reasons.append(f"macro ROC AUC {macro_candidate:.4f} < floor {policy.macro_floor}")

    if champion is None:
        reasons += task_reasons
        if reasons:
            return Decision(False, reasons, per_task, macro)
        return Decision(True, [f"first model: macro ROC AUC {macro_candidate:.4f} >= floor {policy.macro_floor}"],
                        per_task, macro)

    common = [t for t in supported if per_task[t]["champion"] is not None]
    if common:
        cand_common = _mean(per_task[t]["candidate"] for t in common)
        champ_common = _mean(per_task[t]["champion"] for t in common)
        delta = cand_common - champ_common
        macro.update({"candidate_common": cand_common, "champion_common": champ_common, "delta": delta,
                      "common_tasks": common})
        if abs(delta) <= TIE_TOLERANCE:
            reasons.append(f"tie: macro ROC AUC {cand_common:.4f} == champion's (a tie keeps the champion)")
        elif delta < policy.min_delta_macro_auc - TIE_TOLERANCE or delta < 0:
            reasons.append(f"macro ROC AUC {cand_common:.4f} vs champion {champ_common:.4f} "
                           f"(delta {delta:+.4f} < required {policy.min_delta_macro_auc:+.4f})")
    else:
        macro["delta"] = None
        reasons.append("no supported task in common with the champion: cannot compare")

    reasons += task_reasons
    if reasons:
        return Decision(False, reasons, per_task, macro)
    return Decision(True, [f"macro ROC AUC {macro['candidate_common']:.4f} vs champion "
                           f"{macro['champion_common']:.4f} (delta {macro['delta']:+.4f}), no task dropped "
                           f"more than {policy.max_task_auc_drop}"], per_task, macro)
