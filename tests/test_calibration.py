"""Per-task calibration: fitting improves miscalibrated scores, JSON roundtrip, the Scorer applies it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation import metrics as M
from evaluation.calibration import fit_calibrators
from features.shards import read_split
from models.artifact import META_FILE
from models.calibration import apply_calibrators
from models.scoring import Scorer
from tests.shard_data import write_shards
from tests.tiny_models import tiny_artifact


def miscalibrated(n: int = 4000, seed: int = 0):
    """Task a: overconfident scores; task b: scores far too low for its base rate; task c: one class."""
    rng = np.random.default_rng(seed)
    true_p = rng.uniform(0.05, 0.95, n)
    y = (rng.random(n) < true_p).astype(int)
    logit = np.log(true_p / (1 - true_p))
    tasks = np.array(["a", "b"] * (n // 2), dtype=object)
    scores = np.where(tasks == "a", 1 / (1 + np.exp(-3 * logit)), 1 / (1 + np.exp(-(logit - 2))))
    tasks[:10], y[:10] = "c", 1
    return y, scores, tasks


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_improves_log_loss_and_ece_per_task_and_keeps_the_rest(method):
    y, s, tasks = miscalibrated()
    fit_rows = np.random.default_rng(1).random(len(y)) < 0.5
    calibrators = fit_calibrators(y[fit_rows], s[fit_rows], tasks[fit_rows], method)
    assert set(calibrators) == {"a", "b"}  # c has one class: no calibrator
    roundtrip = json.loads(json.dumps(calibrators))
    held = ~fit_rows
    calibrated = apply_calibrators(roundtrip, tasks[held], s[held])
    for task in ("a", "b"):
        rows = tasks[held] == task
        yt, raw, cal = y[held][rows], s[held][rows], calibrated[rows]
        assert M.log_loss(yt, cal) < M.log_loss(yt, raw) - 0.02, task
        assert M.ece(yt, cal) < M.ece(yt, raw) / 2, task
        assert ((cal >= 0) & (cal <= 1)).all()
    c = tasks[held] == "c"
    np.testing.assert_array_equal(calibrated[c], s[held][c])


def test_platt_is_monotone_so_auc_is_unchanged():
    y, s, tasks = miscalibrated()
    cal = apply_calibrators(fit_calibrators(y, s, tasks, "platt"), tasks, s)
    rows = tasks == "a"
    assert M.roc_auc(y[rows], cal[rows]) == pytest.approx(M.roc_auc(y[rows], s[rows]))


def test_none_and_unknown_methods():
    assert fit_calibrators([0, 1], [0.2, 0.7], ["a", "a"], "none") == {}
    with pytest.raises(ValueError, match="platt"):
        fit_calibrators([0, 1], [0.2, 0.7], ["a", "a"], "beta")
    np.testing.assert_array_equal(apply_calibrators(None, ["a"], [0.3]), [0.3])


def test_scorer_applies_the_calibrators_stored_in_the_artifact(tmp_path):
    artifact = tiny_artifact(tmp_path / "model", ("a", "b", "c"))
    frame = read_split(write_shards(tmp_path / "shards"), "valid")
    raw = Scorer.load(artifact).predict(frame)
    calibrators = {"a": {"method": "platt", "a": -2.0, "b": 0.5},
                   "b": {"method": "isotonic", "x": [0.0, 1.0], "y": [0.9, 0.1]}}
    meta = json.loads((artifact / META_FILE).read_text())
    (artifact / META_FILE).write_text(json.dumps({**meta, "calibrators": calibrators}))
    scored = Scorer.load(artifact).predict(frame)
    np.testing.assert_allclose(scored, apply_calibrators(calibrators, frame["task"].to_numpy(), raw), rtol=1e-6)
    c = (frame["task"] == "c").to_numpy()
    np.testing.assert_allclose(scored[c], raw[c], rtol=1e-6)
    assert not np.allclose(scored[~c], raw[~c])
