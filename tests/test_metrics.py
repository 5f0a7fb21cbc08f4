"""evaluation.metrics against scikit-learn on known cases, ties, one class and tiny tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, precision_recall_curve, roc_auc_score

from evaluation import metrics as M


def random_case(n: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.clip(rng.random(n) * 0.7 + 0.3 * y, 0, 1)
    return y, (np.round(s, 1) if ties else s)


@pytest.mark.parametrize("n,ties", [(2, False), (7, True), (50, False), (50, True), (2000, True)])
def test_auc_and_average_precision_match_sklearn(n, ties):
    y, s = random_case(n, seed=n, ties=ties)
    assert M.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.pr_auc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_known_values():
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert M.roc_auc(y, s) == pytest.approx(0.75)
    assert M.pr_auc(y, s) == pytest.approx(0.8333333333)
    assert M.roc_auc([0, 1, 0, 1], [0.5] * 4) == 0.5  # all tied: a coin
    assert M.roc_auc([0, 1], [0.9, 0.1]) == 0.0
    assert M.precision_recall_at_threshold(y, s, 0.5) == (1.0, 0.5)
    assert M.precision_recall_at_threshold(y, s, 0.95) == (None, 0.0)


def test_precision_at_recall_and_recall_at_precision_match_the_sklearn_curve():
    y, s = random_case(300, seed=3, ties=True)
    precision, recall, _ = precision_recall_curve(y, s)
    for r in M.RECALL_LEVELS:
        assert M.precision_at_recall(y, s, r) == pytest.approx(precision[recall >= r].max())
    assert M.recall_at_precision(y, s, 0.9) == pytest.approx(recall[precision >= 0.9].max())
    # no threshold reaches the precision: recall 0
    assert M.recall_at_precision([1, 0, 0], [0.1, 0.5, 0.9], 0.9) == 0.0


def test_probability_metrics_match_sklearn_and_ece_by_hand():
    y, s = random_case(500, seed=5)
    assert M.log_loss(y, s) == pytest.approx(log_loss(y, s), rel=1e-9)
    assert M.brier(y, s) == pytest.approx(brier_score_loss(y, s), rel=1e-12)
    # two bins used: [0.1, 0.1] with labels [0, 1] -> gap 0.4; [0.95] with label 1 -> gap 0.05
    assert M.ece([0, 1, 1], [0.1, 0.1, 0.95]) == pytest.approx((2 * 0.4 + 0.05) / 3)
    assert M.ece([1], [1.0]) == 0.0  # a score of exactly 1 lands in the last bin
    assert M.ece(y, y.astype(float)) == 0.0


@pytest.mark.parametrize("labels,reason", [([1, 1, 1], "only positives"), ([0, 0], "only negatives"),
                                           ([], "no rows")])
def test_one_class_task_has_undefined_ranking_metrics_with_a_reason_and_the_rest(labels, reason):
    scores = np.linspace(0.2, 0.9, len(labels))
    out = M.task_metrics(labels, scores, bootstrap=50)
    for metric in M.RANKING_METRICS:
        assert out[metric] is None
        assert out["reasons"][metric] == f"undefined: {reason}"
    assert out["roc_auc_ci_low"] is None and out["pr_auc_ci_high"] is None
    assert out["n"] == len(labels) and out["positives"] == int(sum(labels))
    if labels:
        assert out["log_loss"] > 0 and out["brier"] > 0 and out["ece"] is not None
    json.dumps(out)  # plain JSON types only


def test_bootstrap_ci_is_seeded_brackets_the_estimate_and_narrows_with_data():
    y, s = random_case(400, seed=9)
    a = M.bootstrap_ci(y, s, resamples=300, seed=1)
    assert a == M.bootstrap_ci(y, s, resamples=300, seed=1)
    assert a != M.bootstrap_ci(y, s, resamples=300, seed=2)
    for name, point in (("roc_auc", M.roc_auc(y, s)), ("pr_auc", M.pr_auc(y, s))):
        low, high = a[name]
        assert low < point < high
    big_y, big_s = random_case(8000, seed=9)
    low, high = M.bootstrap_ci(big_y, big_s, resamples=200)["roc_auc"]
    assert high - low < a["roc_auc"][1] - a["roc_auc"][0]
    # a bootstrap AUC equals sklearn's AUC of the same resample (the count-matrix path is exact)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y), len(y))
    weights = np.bincount(idx, minlength=len(y)).astype(float)
    order, group = M._grouped(y, s)
    pos, neg = M._group_counts(weights[order][None, :], y, order, group)
    assert M._auc_from_counts(pos, neg)[0] == pytest.approx(roc_auc_score(y[idx], s[idx]))
    assert M._ap_from_counts(pos, neg)[0] == pytest.approx(average_precision_score(y[idx], s[idx]))


def test_tiny_task_bootstrap_skips_one_class_resamples():
    out = M.task_metrics([0, 1], [0.2, 0.8], bootstrap=200)
    assert out["roc_auc"] == 1.0 and out["roc_auc_ci_low"] == 1.0 and out["roc_auc_ci_high"] == 1.0


def test_macro_averages_defined_tasks_and_micro_pools_rows():
    y = np.array([0, 1, 0, 1, 1, 1, 0, 1])
    s = np.array([0.1, 0.9, 0.6, 0.4, 0.5, 0.7, 0.3, 0.8])
    tasks = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    report = M.evaluate_tasks(y, s, tasks, bootstrap=20, task_order=["a", "b", "c", "d", "e"])
    assert list(report["tasks"]) == ["a", "b", "c", "d", "e"]
    assert report["tasks"]["c"]["roc_auc"] is None and report["tasks"]["e"]["n"] == 0
    assert report["macro"]["roc_auc"] == pytest.approx(np.mean([1.0, 0.0, 1.0]))
    assert report["macro"]["tasks"]["roc_auc"] == 3
    macro = report["macro"]  # its interval bootstrapped over the defined tasks (see the next tests)
    assert macro["roc_auc_ci_low"] is not None
    assert macro["roc_auc_ci_low"] <= macro["roc_auc"] <= macro["roc_auc_ci_high"]
    assert report["micro"]["roc_auc_ci_low"] is not None
    assert report["macro"]["n"] == 8 and report["macro"]["positives"] == 5
    assert report["micro"]["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    json.dumps(report)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        M.roc_auc([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 or 1"):
        M.task_metrics([0, 2], [0.1, 0.2])


def test_paired_bootstrap_of_the_auc_difference_matches_a_brute_force_reference():
    rng = np.random.default_rng(3)
    n = 40
    y = rng.integers(0, 2, n)
    a = np.round(rng.random(n), 1)  # ties, as real scores have
    b = np.round(a + 0.4 * y * rng.random(n), 1)
    got = M.paired_bootstrap_auc_delta(y, a, b, resamples=300, seed=7)
    draws = np.random.default_rng(7).integers(0, n, size=(300, n))  # the same rows for both models
    reference = [roc_auc_score(y[d], b[d]) - roc_auc_score(y[d], a[d]) for d in draws if 0 < y[d].sum() < n]
    assert got["delta"] == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a), abs=1e-12)
    assert got["resamples"] == len(reference)
    assert got["low"] == pytest.approx(np.percentile(reference, 2.5), abs=1e-12)
    assert got["high"] == pytest.approx(np.percentile(reference, 97.5), abs=1e-12)
    assert got["low"] > 0  # b is better on these rows, and the paired interval says so


def test_paired_bootstrap_needs_both_classes_and_a_resample():
    assert M.paired_bootstrap_auc_delta([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) is None
    assert M.paired_bootstrap_auc_delta([0, 1], [0.1, 0.2], [0.2, 0.1], resamples=0) is None
    same = M.paired_bootstrap_auc_delta([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.4], [0.1, 0.9, 0.3, 0.4], resamples=50)
    assert same == {"delta": 0.0, "low": 0.0, "high": 0.0, "resamples": same["resamples"]}


def test_the_macro_interval_is_a_bootstrap_of_the_mean_over_tasks_not_a_mean_of_bounds():
    rng = np.random.default_rng(3)
    tasks = np.repeat(["a", "b", "c"], 300)
    y = rng.integers(0, 2, tasks.size)
    s = np.clip(y * np.array([0.3, 0.2, 0.1])[np.searchsorted(["a", "b", "c"], tasks)] + rng.random(tasks.size) * 0.8,
                0, 1)
    report = M.evaluate_tasks(y, s, tasks, bootstrap=400)
    macro, per_task = report["macro"], report["tasks"].values()
    assert macro["roc_auc_ci_low"] < macro["roc_auc"] < macro["roc_auc_ci_high"]
    width = macro["roc_auc_ci_high"] - macro["roc_auc_ci_low"]
    mean_width = np.mean([t["roc_auc_ci_high"] - t["roc_auc_ci_low"] for t in per_task])
    assert 0.4 * mean_width < width < 0.8 * mean_width  # the mean of 3 independent estimates: about 1/sqrt(3)
    assert M.evaluate_tasks(y, s, tasks, bootstrap=0)["macro"]["roc_auc_ci_low"] is None
