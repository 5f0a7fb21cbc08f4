"""Score distributions and the PSI (evaluation/drift.py): pure functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import drift


def test_histogram_has_fixed_bins_over_0_1_and_keeps_the_ends():
    counts = drift.histogram([0.0, 0.01, 0.099, 0.1, 0.5, 0.999, 1.0, 1.2, -0.1])
    assert counts.sum() == 9 and len(counts) == drift.BINS == 10
    assert counts[0] == 4 and counts[1] == 1 and counts[5] == 1 and counts[-1] == 3  # clipped into the ends


def test_psi_matches_the_formula_and_is_zero_for_the_same_distribution():
    expected, actual = [50, 30, 20], [30, 30, 40]
    e, a = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    assert drift.psi(expected, actual) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert drift.psi(expected, [5, 3, 2]) == pytest.approx(0.0)  # counts or proportions alike
    assert drift.psi([1, 0], [0, 1]) == pytest.approx(2 * (1 - drift.PSI_FLOOR) * math.log(1 / drift.PSI_FLOOR))
    assert drift.psi([0, 0], [1, 1]) is None and drift.psi([1, 1], [0, 0]) is None
    with pytest.raises(ValueError, match="different bins"):
        drift.psi([1, 2], [1, 2, 3])


def test_a_shifted_distribution_crosses_the_usual_thresholds_and_a_resample_does_not():
    rng = np.random.default_rng(0)
    base = rng.beta(2, 5, 20_000)
    same = drift.psi(drift.histogram(base), drift.histogram(rng.beta(2, 5, 5_000)))
    shifted = drift.psi(drift.histogram(base), drift.histogram(rng.beta(5, 2, 5_000)))
    assert same < 0.02 and shifted > 0.25


def test_reference_per_segment():
    ref = drift.reference([0.1, 0.2, 0.9, 0.6], ["a", "a", "b", "b"])
    assert ref["bins"] == drift.BINS and set(ref["tasks"]) == {"a", "b"}
    a, b = ref["tasks"]["a"], ref["tasks"]["b"]
    assert a["rows"] == 2 and sum(a["counts"]) == 2 and a["share_above_0.5"] == 0.0
    assert b["mean"] == pytest.approx(0.75) and b["share_above_0.5"] == 1.0 and b["quantiles"]["0.5"] == 0.75
    assert drift.distribution([])["rows"] == 0
