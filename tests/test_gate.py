"""The promotion gate (evaluation/gate.py): pure decisions on hand-built evaluation reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.gate import GatePolicy, decide, load_policy
from features.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("a", "b", "c")
POLICY = GatePolicy()


def report(aucs: dict, *, n: int = 500, positives: int = 100, digest: str = "sha256:d", complete: bool = True,
           support: dict | None = None) -> dict:
    tasks = {}
    for task, auc in aucs.items():
        rows, pos = (support or {}).get(task, (n, positives))
        tasks[task] = {"roc_auc": auc, "pr_auc": None if auc is None else auc / 2, "n": rows, "positives": pos}
    macro = [v for v in aucs.values() if v is not None]
    return {"tasks": tasks, "macro": {"roc_auc": sum(macro) / len(macro) if macro else None}, "micro": {},
            "model": {}, "data": {"manifest_digest": digest, "split": "test"}, "complete": complete}


def test_configs_promotion_yaml_documents_the_defaults():
    assert load_policy(ROOT / "configs/promotion.yaml") == GatePolicy()


def test_first_model_is_promoted_when_the_floors_hold():
    decision = decide(report({"a": 0.7, "b": 0.65, "c": 0.6}), None, POLICY, TASKS)
    assert decision.promote, decision.reasons
    assert "first model" in decision.reasons[0]
    assert decision.macro["candidate"] == pytest.approx(0.65)
    assert set(decision.per_task) == set(TASKS) and all(r["supported"] for r in decision.per_task.values())


def test_first_model_below_the_macro_floor_is_not_promoted():
    decision = decide(report({"a": 0.5, "b": 0.52, "c": 0.55}), None, POLICY, TASKS)
    assert not decision.promote
    assert "< floor 0.55" in decision.reasons[0]


def test_task_floor_blocks_one_weak_task():
    policy = GatePolicy(task_floor=0.6)
    decision = decide(report({"a": 0.9, "b": 0.9, "c": 0.58}), None, policy, TASKS)
    assert not decision.promote
    assert decision.per_task["c"]["status"] == "below_floor" and decision.reasons == [
        "c: ROC AUC 0.5800 < task floor 0.6"]


def test_better_candidate_is_promoted():
    champion = report({"a": 0.7, "b": 0.7, "c": 0.7})
    decision = decide(report({"a": 0.75, "b": 0.72, "c": 0.7}), champion, POLICY, TASKS)
    assert decision.promote, decision.reasons
    assert decision.macro["delta"] == pytest.approx(0.0233333, abs=1e-6)
    assert decision.per_task["a"]["delta"] == pytest.approx(0.05)


def test_better_on_average_but_worse_on_one_task_is_kept():
    champion = report({"a": 0.7, "b": 0.7, "c": 0.7})
    decision = decide(report({"a": 0.9, "b": 0.9, "c": 0.68}), champion, POLICY, TASKS)
    assert not decision.promote
    assert decision.per_task["c"]["status"] == "drop"
    assert decision.reasons == ["c: ROC AUC 0.6800 vs champion 0.7000 (drop 0.0200 > 0.01)"]
    # a drop within max_task_auc_drop is tolerated
    assert decide(report({"a": 0.9, "b": 0.9, "c": 0.695}), champion, POLICY, TASKS).promote


def test_worse_candidate_is_kept_with_the_macro_reason():
    champion = report({"a": 0.8, "b": 0.8, "c": 0.8})
    decision = decide(report({"a": 0.795, "b": 0.795, "c": 0.795}), champion, POLICY, TASKS)
    assert not decision.promote
    assert decision.reasons[0].startswith("macro ROC AUC 0.7950 vs champion 0.8000 (delta -0.0050")


def test_tie_keeps_the_champion_and_min_delta_is_required():
    champion = report({"a": 0.7, "b": 0.8, "c": 0.9})
    tie = decide(report({"a": 0.7, "b": 0.8, "c": 0.9}), champion, POLICY, TASKS)
    assert not tie.promote and tie.reasons[0].startswith("tie:")
    # same macro, tasks traded within the tolerated drop: still a tie
    assert not decide(report({"a": 0.705, "b": 0.795, "c": 0.9}), champion, POLICY, TASKS).promote
    small_gain = report({"a": 0.71, "b": 0.8, "c": 0.9})
    assert decide(small_gain, champion, POLICY, TASKS).promote
    assert not decide(small_gain, champion, GatePolicy(min_delta_macro_auc=0.01), TASKS).promote


@pytest.mark.parametrize("broken", [None, {}, {"tasks": {}}, "incomplete"])
def test_missing_or_incomplete_candidate_evaluation_never_promotes(broken):
    if broken == "incomplete":
        broken = report({"a": 0.99, "b": 0.99, "c": 0.99}, complete=False)
    for champion in (None, report({"a": 0.5, "b": 0.5, "c": 0.5})):
        decision = decide(broken, champion, POLICY, TASKS)
        assert not decision.promote and "missing or incomplete" in decision.reasons[0]


def test_candidate_missing_a_task_of_the_data_never_promotes():
    decision = decide(report({"a": 0.99, "b": 0.99}), None, POLICY, TASKS)
    assert not decision.promote and decision.reasons == ["candidate evaluation lacks task(s) of the data: c"]


def test_incomplete_champion_or_other_data_cannot_be_compared():
    candidate = report({"a": 0.9, "b": 0.9, "c": 0.9})
    decision = decide(candidate, report({"a": 0.5, "b": 0.5, "c": 0.5}, complete=False), POLICY, TASKS)
    assert not decision.promote and "champion evaluation" in decision.reasons[0]
    decision = decide(candidate, report({"a": 0.5, "b": 0.5, "c": 0.5}, digest="sha256:other"), POLICY, TASKS)
    assert not decision.promote and "other data" in decision.reasons[0]


def test_tasks_without_enough_support_are_ignored():
    support = {"c": (20, 3)}  # tiny segment: its AUC is noise
    champion = report({"a": 0.7, "b": 0.7, "c": 0.9}, support=support)
    decision = decide(report({"a": 0.75, "b": 0.75, "c": 0.4}, support=support), champion, POLICY, TASKS)
    assert decision.promote, decision.reasons
    assert decision.per_task["c"]["status"] == "unsupported" and "20 rows < 100" in decision.per_task["c"]["note"]
    assert decision.macro["tasks"] == ["a", "b"]
    # single-class task (no AUC) and too few negatives are unsupported too
    one_class = report({"a": 0.75, "b": 0.75, "c": None}, support={"c": (500, 500)})
    assert decide(one_class, None, POLICY, TASKS).per_task["c"]["note"] == "ignored: 0 negatives < 10"
    # nothing supported at all: no decision can be made
    none = decide(report({"a": 0.9, "b": 0.9, "c": 0.9}, n=30), None, POLICY, TASKS)
    assert not none.promote and none.reasons[0].startswith("no task has enough support")


def test_new_task_is_checked_against_floors_only():
    champion = report({"a": 0.7, "b": 0.7})
    decision = decide(report({"a": 0.72, "b": 0.72, "c": 0.6}), champion, POLICY, TASKS)
    assert decision.promote, decision.reasons
    assert decision.macro["common_tasks"] == ["a", "b"] and "new task" in decision.per_task["c"]["note"]


def test_load_policy_overrides_and_one_line_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("macro_floor: 0.6\ntask_floor: 0.5\nmin_task_rows: 20\n")
    assert load_policy(path) == GatePolicy(macro_floor=0.6, task_floor=0.5, min_task_rows=20)
    assert load_policy(path, min_task_rows=5).min_task_rows == 5
    cases = {
        "macro_flor: 0.6\n": "unknown key 'macro_flor'",
        "macro_floor: high\n": "macro_floor must be a number, got 'high'",
        "min_task_rows: 2.5\n": "min_task_rows must be an integer",
        "macro_floor: 1.5\n": "macro_floor must be in [0, 1]",
        "- a\n": "must be a mapping",
        "a: [\n": "not valid YAML",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
            load_policy(path)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="policy not found"):
        load_policy(tmp_path / "missing.yaml")
