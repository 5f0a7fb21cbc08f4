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


# --- the per-segment rollout (evaluation/segment_gate.py) ----------------------------------------


def paired_rows(gains: dict, n: int = 500, seed: int = 0):
    """Test rows of each task scored by the serving version and by the candidate, whose scores are
    less noisy by ``gains[task]`` (0: the same scores)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frames = []
    for task, gain in gains.items():
        label = rng.integers(0, 2, n)
        serving = label + rng.normal(0, 2.0, n)
        candidate = serving if gain == 0 else label + rng.normal(0, 2.0 * (1 - gain) + 0.1, n)
        frames.append(pd.DataFrame({"task": task, "label": label, "candidate": candidate, "serving": serving}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["task", "label", "candidate",
                                                                                     "serving"])


def segments(candidate_aucs, serving_aucs, gains, *, serving=None, policy=None, support=None):
    from evaluation.segment_gate import decide_segments

    serving = {t: "1" for t in serving_aucs} if serving is None else serving
    return decide_segments(report(candidate_aucs, support=support), report(serving_aucs) if serving else None,
                           policy or POLICY, TASKS, candidate_version="2", serving=serving,
                           paired=paired_rows(gains))


def test_per_segment_the_candidate_takes_what_it_wins_and_the_rest_keeps_its_version():
    decision = segments({"a": 0.8, "b": 0.7, "c": 0.6}, {"a": 0.7, "b": 0.7, "c": 0.65},
                        {"a": 0.9, "b": 0.0, "c": 0.0})
    assert decision.promote and decision.routing == {"a": "2", "b": "1", "c": "1"}
    a, b = decision.segments["a"], decision.segments["b"]
    assert a["takes"] and a["gain_low"] > 0 and a["gain_low"] <= a["gain"] <= a["gain_high"]
    assert not b["takes"] and b["reason"].endswith("lower bound not above 0.0") and b["gain"] == 0
    assert decision.reasons[0].startswith("takes 1 of 3 segments (a)")
    # a required gain the interval does not clear keeps it too
    stricter = GatePolicy(min_delta_task_auc=0.5)
    assert not segments({"a": 0.8, "b": 0.7, "c": 0.6}, {"a": 0.7, "b": 0.7, "c": 0.65},
                        {"a": 0.9, "b": 0.0, "c": 0.0}, policy=stricter).promote


def test_per_segment_too_few_rows_keep_their_version_and_a_new_segment_goes_to_the_candidate():
    decision = segments({"a": 0.9, "b": 0.7, "c": 0.6}, {"a": 0.7, "b": 0.7}, {"a": 0.9, "b": 0.0},
                        serving={"a": "1", "b": "1"}, support={"a": (50, 10)})
    assert decision.segments["a"]["reason"].startswith("too few rows") and not decision.segments["a"]["takes"]
    assert decision.segments["c"]["takes"] and decision.segments["c"]["reason"] == "no version serves it yet"
    assert decision.routing == {"a": "1", "b": "1", "c": "2"}


def test_per_segment_floors_hold():
    # below the macro floor: nothing taken
    low = segments({"a": 0.5, "b": 0.5, "c": 0.52}, {"a": 0.5, "b": 0.5, "c": 0.5}, {"a": 0.9, "b": 0.9, "c": 0.9})
    assert not low.promote and low.reasons[0].startswith("macro ROC AUC") and low.routing == dict.fromkeys(TASKS, "1")
    # below the task floor on a segment nothing else can serve: nothing changes
    policy = GatePolicy(task_floor=0.65)
    stranded = segments({"a": 0.9, "b": 0.9, "c": 0.6}, {"a": 0.7, "b": 0.7}, {"a": 0.9, "b": 0.9},
                        serving={"a": "1", "b": "1"}, policy=policy)
    assert not stranded.promote and stranded.reasons[0].startswith("no version can serve c")
    # no champion at all: every segment goes to the candidate (a first model)
    first = segments({"a": 0.8, "b": 0.7, "c": 0.6}, {}, {}, serving={})
    assert first.promote and first.routing == dict.fromkeys(TASKS, "2")
    assert first.reasons[0].startswith("first model: macro ROC AUC 0.7000 >= floor 0.55; takes 3 of 3 segments")


def test_a_policy_s_rollout_is_checked():
    assert load_policy(None, rollout="whole").rollout == "whole"
    with pytest.raises(UserError, match="rollout must be one of per_segment, whole"):
        load_policy(None, rollout="by_market")
    with pytest.raises(UserError, match="bootstrap_resamples must be >= 100"):
        load_policy(None, bootstrap_resamples=10)
