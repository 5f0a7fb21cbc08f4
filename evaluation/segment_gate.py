"""The per-segment gate (policy ``rollout: per_segment``): each segment (task) goes to the candidate
or stays with the version serving it now, on its own evidence. Pure functions, like evaluation/gate.py.

Per segment of the evaluation data, in order:

1. The reports must be judgeable as in the whole rollout (complete, every task of the data, the
   same data); and the candidate's macro ROC AUC over its supported segments must reach
   ``macro_floor``, or it takes nothing.
2. The task floor (``task_floor``, when set) holds for every segment the candidate would take; a
   segment no version serves yet whose candidate is below it blocks every change (nothing could
   serve it).
3. A segment no version serves yet (new, or no champion) goes to the candidate.
4. A segment with too few rows (``min_task_*``) keeps its version: its gain cannot be told from noise.
5. Otherwise the paired bootstrap (evaluation.metrics.paired_bootstrap_auc_delta: both versions on
   the same resampled test rows, ``bootstrap_resamples``, ``confidence``) of the ROC AUC gain: the
   candidate takes the segment when the interval's lower bound is above ``min_delta_task_auc``.

The result is the routing after the decision (segment -> version) and, per segment, from and to
version, the gain with its interval, the rule that decided (:data:`RULE_WORDS`) and the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from evaluation.gate import TIE_TOLERANCE, Decision, GatePolicy, auc_of, mean, support, why_not_judged
from evaluation.metrics import paired_bootstrap_auc_delta

# Each segment's verdict has a rule (a short name of why) and a reason (the sentence).
RULE_WORDS = {"gain": "with a clear gain", "unserved": "served by no version yet",
              "no_clear_gain": "without a gain clear of noise", "too_few_rows": "with too few rows",
              "below_task_floor": "below the task floor", "serves_already": "served by the candidate already",
              "no_paired_auc": "without a paired ROC AUC"}
# Columns of the paired scores: each test row of a segment with a serving version, scored by both.
PAIRED_COLUMNS = ("task", "label", "candidate", "serving")


def _gain(rows: pd.DataFrame, policy: GatePolicy) -> dict[str, float] | None:
    return paired_bootstrap_auc_delta(rows["label"].to_numpy(), rows["serving"].to_numpy(),
                                      rows["candidate"].to_numpy(), resamples=policy.bootstrap_resamples,
                                      level=policy.confidence)


def _segment(task: str, entry: Mapping[str, Any], serving_report: Mapping[str, Any] | None, server: str | None,
             candidate_version: str, rows: pd.DataFrame, policy: GatePolicy) -> dict[str, Any]:
    """One segment's verdict: ``to`` is the version that serves it after the decision."""
    ok, why, counts = support(entry, policy)
    cand = auc_of(entry)
    row: dict[str, Any] = {"from": server, "to": server, "candidate": cand, **counts, "supported": ok,
                           "serving": auc_of((serving_report or {}).get("tasks", {}).get(task))}

    def verdict(takes: bool, rule: str, reason: str) -> dict[str, Any]:
        return {**row, "to": candidate_version if takes else server, "takes": takes, "rule": rule, "reason": reason}

    below_floor = policy.task_floor is not None and cand is not None and cand < policy.task_floor
    if server == candidate_version:
        return verdict(False, "serves_already", "the candidate serves it already")
    if below_floor:
        return verdict(False, "below_task_floor", f"ROC AUC {cand:.4f} < task floor {policy.task_floor}")
    if server is None:
        return verdict(True, "unserved", "no version serves it yet")
    if not ok:
        return verdict(False, "too_few_rows", f"too few rows to tell a gain from noise ({why})")
    gain = _gain(rows, policy)
    if gain is None:
        return verdict(False, "no_paired_auc", "no paired ROC AUC (one class in the rows both versions scored)")
    row.update(gain=gain["delta"], gain_low=gain["low"], gain_high=gain["high"], paired_rows=len(rows))
    interval = f"gain {gain['delta']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]"
    if gain["low"] > policy.min_delta_task_auc + TIE_TOLERANCE:
        return verdict(True, "gain", f"{interval}: lower bound above {policy.min_delta_task_auc}")
    return verdict(False, "no_clear_gain", f"{interval}: lower bound not above {policy.min_delta_task_auc}")


def decide_segments(candidate: Mapping[str, Any] | None, serving_report: Mapping[str, Any] | None,
                    policy: GatePolicy, expected_tasks: Iterable[str], *, candidate_version: str,
                    serving: Mapping[str, str], paired: pd.DataFrame) -> Decision:
    """Which segments ``candidate_version`` takes from the versions in ``serving`` (task -> version;
    empty without a champion), given the reports of the candidate and of the champion
    (``serving_report``, None without one) and ``paired``, the test rows scored by both
    (:data:`PAIRED_COLUMNS`). ``Decision.promote`` is whether any segment changes version."""
    why_not = why_not_judged(candidate, serving_report, sorted(expected_tasks))
    if why_not:
        return Decision(False, [why_not], routing=dict(serving))
    tasks = candidate["tasks"]
    supported = [t for t in sorted(tasks) if support(tasks[t], policy)[0]]
    macro = {"candidate": mean(auc_of(tasks[t]) for t in supported), "tasks": supported}
    if not supported:
        return Decision(False, ["no segment has enough support to judge"], macro=macro, routing=dict(serving))
    if macro["candidate"] < policy.macro_floor:
        return Decision(False, [f"macro ROC AUC {macro['candidate']:.4f} < floor {policy.macro_floor}: the "
                                "candidate takes no segment"], macro=macro, routing=dict(serving))
    by_task = dict(tuple(paired.groupby("task", sort=False))) if len(paired) else {}
    empty = pd.DataFrame(columns=list(PAIRED_COLUMNS))
    segments = {task: _segment(task, tasks[task], serving_report, serving.get(task), candidate_version,
                               by_task.get(task, empty), policy) for task in sorted(tasks)}
    stranded = [t for t, s in segments.items() if s["to"] is None]
    if stranded:
        return Decision(False, [f"no version can serve {', '.join(stranded)} (the candidate is below the task "
                                "floor there): nothing changes"], segments=segments, macro=macro,
                        routing=dict(serving))
    routing = {**serving, **{t: s["to"] for t, s in segments.items()}}
    taken = sorted(t for t, s in segments.items() if s["takes"])
    if not taken:
        rules = Counter(s["rule"] for s in segments.values())
        why = ", ".join(f"{n} {RULE_WORDS[r]}" for r, n in sorted(rules.items(), key=lambda item: -item[1]))
        reason = f"no segment changes version ({why}; each segment's verdict is in the decision's segments)"
        return Decision(False, [reason], segments=segments, macro=macro, routing=routing)
    kept = sorted(set(segments) - set(taken))
    summary = f"takes {len(taken)} of {len(segments)} segments ({', '.join(taken)})"
    if not serving:
        summary = f"first model: macro ROC AUC {macro['candidate']:.4f} >= floor {policy.macro_floor}; " + summary
    if kept:
        summary += "; " + ", ".join(f"{t} stays with version {segments[t]['to']}" for t in kept)
    return Decision(True, [summary], segments=segments, macro=macro, routing=routing)


def paired_scores(candidate: pd.DataFrame, serving: pd.DataFrame) -> pd.DataFrame:
    """The test rows both evaluations scored (example_id, task, label, score each), side by side as
    :data:`PAIRED_COLUMNS`; rows are matched by task, example_id and their order among equal ids."""
    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(occurrence=frame.groupby(["task", "example_id"], sort=False).cumcount())

    both = keyed(candidate).merge(keyed(serving), on=["task", "example_id", "occurrence"], suffixes=("", "_serving"))
    if not (both["label"] == both["label_serving"]).all():
        raise ValueError("the two evaluations disagree on the labels of the same rows: not the same data")
    return both.rename(columns={"score": "candidate", "score_serving": "serving"})[list(PAIRED_COLUMNS)]


def segment_lines(segments: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per segment of a decision: from and to version, the gain with its interval, the reason."""
    lines = []
    for task, row in sorted(segments.items()):
        gain = (f"gain {row['gain']:+.4f} [{row['gain_low']:+.4f}, {row['gain_high']:+.4f}]"
                if row.get("gain") is not None else "gain -")
        move = f"{row['from'] or 'none'} -> {row['to']}" if row.get("takes") else f"stays {row['to'] or 'none'}"
        lines.append(f"{task}: {move}, {gain}: {row['reason']}")
    return lines
