"""The quality diagnosis's pure parts: pair kinds, relation-slice AUCs and the Λ_t / mixing structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
from safetensors.numpy import save_file

from benchmarks.quality_diagnosis import pair_kind, slice_aucs, task_structure

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


def test_task_structure_groups_pairs_and_measures_drift(tmp_path):
    rank, tasks = 2, [US_RETAIL, US_TRAVEL, GB_RETAIL]
    eye = np.eye(rank, dtype=np.float32)
    update = np.array([[[1, 0], [0, 0]], [[1, 0], [0, 0]], [[0, 0], [0, 1]]], dtype=np.float32)
    weights = {
        "layer.0.lora_lambda": eye + 0.1 * update,
        "layer.0.lora_w": np.array([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=np.float32),
    }
    save_file(weights, str(tmp_path / "adapter.safetensors"))
    out = task_structure(tmp_path, tasks)
    assert out["same_market"]["pairs"] == 1 and np.isclose(out["same_market"]["lambda_cosine"], 1.0)
    assert np.isclose(out["same_vertical"]["lambda_cosine"], 0.0)
    assert out["same_market"]["mixing_overlap"] > 0.99 > 0.01 > out["same_vertical"]["mixing_overlap"]
    assert np.isclose(out["lambda_drift"]["mean"], 0.1 / np.sqrt(rank))


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
