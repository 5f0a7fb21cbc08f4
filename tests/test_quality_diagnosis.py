"""The quality diagnosis: pair kinds, relation-slice AUCs, the Λ_t / mixing structure of a saved
mtl_lora model, and the market-cue ablation of benchmarks.quality."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.quality_diagnosis import pair_kind, slice_aucs, structure_by_pair_kind, task_structure

US_RETAIL = {"id": 0, "name": "us-retail", "markets": ["en-US"], "verticals": ["retail"]}
US_TRAVEL = {"id": 1, "name": "us-travel", "markets": ["en-US"], "verticals": ["travel"]}
GB_RETAIL = {"id": 2, "name": "gb-retail", "markets": ["en-GB"], "verticals": ["retail"]}
FINANCE = {"id": 3, "name": "finance", "markets": ["*"], "verticals": ["finance"]}


def test_pair_kind_uses_markets_and_verticals_but_not_wildcards():
    assert pair_kind(US_RETAIL, US_TRAVEL) == "same_market"
    assert pair_kind(US_RETAIL, GB_RETAIL) == "same_vertical"
    assert pair_kind(US_TRAVEL, GB_RETAIL) == "unrelated"
    assert pair_kind(FINANCE, US_RETAIL) == "unrelated"  # '*' spans every market: no shared market


def test_slice_aucs_pool_each_relation_over_tasks():
    # In each task the rule rows have one verdict, so only a pooled AUC can see them ordered.
    frame = pd.DataFrame({
        "task": ["a", "a", "b", "b", "a", "a", "b", "b"],
        "relation": ["competitor"] * 4 + ["exact", "off_topic", "exact", "off_topic"],
        "label": [1, 1, 0, 0, 1, 0, 1, 0],
    })
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.1, 0.9, 0.2, 0.8])
    out = slice_aucs(frame, scores)
    assert out["competitor"] == 1.0 and out["rules"] == 1.0
    assert out["core"] == 0.0  # the core rows are ranked backwards
    assert out["exact"] is None  # one class only
    # the benchmark's figure, per task then averaged: task a 0.5/3, task b 1.5/3
    assert np.isclose(out["all"], (0.5 / 3 + 1.5 / 3) / 2)
    assert out["neighbour"] is None


def test_structure_by_pair_kind_groups_pairs_and_measures_drift():
    tasks = [US_RETAIL, US_TRAVEL, GB_RETAIL]
    cosine = np.array([[1.0, 0.8, 0.1], [0.8, 1.0, -0.2], [0.1, -0.2, 1.0]])
    mixing = [np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])]
    out = structure_by_pair_kind(mixing, cosine, np.array([0.1, 0.2, 0.3]), tasks)
    assert out["same_market"]["pairs"] == 1 and np.isclose(out["same_market"]["lambda_cosine"], 0.8)
    assert np.isclose(out["same_vertical"]["lambda_cosine"], 0.1)
    assert np.isclose(out["unrelated"]["lambda_cosine"], -0.2)
    assert out["same_market"]["mixing_overlap"] == 1.0 and out["same_vertical"]["mixing_overlap"] == 0.0
    assert np.isclose(out["lambda_drift"]["mean"], 0.2)


def test_task_structure_reads_a_saved_mtl_lora_model(tmp_path):
    from tests.tiny_models import tiny_artifact

    tasks = [US_RETAIL, US_TRAVEL, GB_RETAIL]
    model_dir = tiny_artifact(tmp_path / "model", [t["name"] for t in tasks], method="mtl_lora")
    out = task_structure(model_dir, tasks)
    assert {k: v["pairs"] for k, v in out.items() if k != "lambda_drift"} == {
        "same_market": 1, "same_vertical": 1, "unrelated": 1}
    # untrained: Λ_t is still the identity, and the mixing is the layer's own softmax(w_t/τ)
    assert out["lambda_drift"]["mean"] == 0.0 and out["same_market"]["lambda_cosine"] == 0.0
    assert 0.0 <= out["same_market"]["mixing_overlap"] <= 1.0


def test_strip_market_cues_removes_domain_and_currency_only(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.quality import strip_market_cues

    source = tmp_path / "shards"
    part = source / "shards" / "split=test" / "task=x"
    part.mkdir(parents=True)
    pq.write_table(pa.table({
        "display_url": ["www.boots.co.uk/a", "www.boots.com.au/b", "www.x.in", "www.canada.ca/c", "www.y.com/d"],
        "ad_description": ["from £9.", "from A$9.", "from ₹9.", "from C$9.", "from $9."],
        "query": ["q .in"] * 5,
    }), part / "part-0.parquet")
    (source / "manifest.json").write_text(json.dumps({"tasks": [], "counts": {}}))
    out = strip_market_cues(source, tmp_path / "stripped")
    table = pq.read_table(out / "shards" / "split=test" / "task=x" / "part-0.parquet").to_pydict()
    assert table["display_url"] == ["www.boots.com/a", "www.boots.com/b", "www.x.com", "www.canada.com/c",
                                    "www.y.com/d"]
    assert table["ad_description"] == ["from $9."] * 5
    assert table["query"] == ["q .in"] * 5  # only the ad text changes
    assert "derived" in json.loads((out / "manifest.json").read_text())
