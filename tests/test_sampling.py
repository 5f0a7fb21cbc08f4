"""Task-balanced streaming batches and pair tokenisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.sampling import TaskBalancedBatches, TaskStream, task_probabilities
from features.shards import MODEL_COLUMNS, split_files
from features.tokenize import PairEncoder, ad_text, length_buckets, query_text
from pipelines.training.config import TrainConfig, load_train_config
from tests.shard_data import write_shards
from tests.tiny_models import tiny_tokenizer


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), rows_per_task=(400, 100, 20))


def test_task_probabilities_follow_the_temperature():
    counts = [900, 100, 0]
    np.testing.assert_allclose(task_probabilities(counts, 1.0), [0.9, 0.1, 0.0])
    np.testing.assert_allclose(task_probabilities(counts, 2.0), [0.75, 0.25, 0.0])
    np.testing.assert_allclose(task_probabilities(counts, 1e9), [0.5, 0.5, 0.0], atol=1e-6)
    with pytest.raises(ValueError):
        task_probabilities(counts, 0.0)


def test_stream_visits_every_row_once_per_epoch_and_seeks_exactly(shards):
    files = split_files(shards, "train")["a"]
    stream = TaskStream(files, ["example_id"], seed=3, task_id=0, window_rows=50)
    epoch = stream.take(stream.rows).column("example_id").to_pylist()
    assert len(set(epoch)) == stream.rows  # a permutation of the task's rows
    rest = stream.take(37).column("example_id").to_pylist()
    again = TaskStream(files, ["example_id"], seed=3, task_id=0, window_rows=50)
    again.seek(stream.rows)
    assert again.take(37).column("example_id").to_pylist() == rest


def batches(shards, temperature=1.0):
    files = {t: split_files(shards, "train")[name] for t, name in enumerate("abc")}
    encoder = PairEncoder(tiny_tokenizer(shards / "tok"), 32)
    return TaskBalancedBatches(files, 3, MODEL_COLUMNS, batch_size=8, encode=encoder.encode,
                               temperature=temperature, seed=0, bucket_factor=4)


def test_small_tasks_get_their_share_at_high_temperature(shards):
    def mix(temperature):
        source = batches(shards, temperature)
        tasks = [source.next_batch() for _ in range(100)]
        ids = np.concatenate([plan.rows.iloc[rows]["task_id"].to_numpy() for plan, rows in tasks])
        return np.bincount(ids, minlength=3) / len(ids)

    proportional, uniform = mix(1.0), mix(100.0)
    assert proportional[2] < 0.1 and uniform[2] > 0.25


def test_batches_resume_mid_megabatch_exactly(shards):
    source = batches(shards)
    for _ in range(6):  # 1.5 mega-batches
        source.next_batch()
    state = source.state_dict()
    expected = [source.next_batch() for _ in range(5)]
    resumed = batches(shards)
    resumed.load_state_dict(state)
    for (plan_a, rows_a), (plan_b, rows_b) in zip(expected, [resumed.next_batch() for _ in range(5)], strict=True):
        assert plan_a.rows.iloc[rows_a]["example_id"].tolist() == plan_b.rows.iloc[rows_b]["example_id"].tolist()


def test_length_buckets_cut_padding_and_keep_every_row():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=640)
    buckets = length_buckets(lengths, 32, rng)
    assert sorted(np.concatenate(buckets).tolist()) == list(range(640))
    padded = sum(len(b) * lengths[b].max() for b in buckets)
    random_padded = sum(32 * lengths[i : i + 32].max() for i in range(0, 640, 32))
    assert padded < 0.7 * random_padded


def test_pair_encoder_pads_to_the_longest_row_and_builds_the_text(tmp_path):
    encoder = PairEncoder(tiny_tokenizer(tmp_path), 16)
    batch = encoder({"query": ["cheap shoes", "hat"], "ad_title": ["buy shoes", "hat"],
                     "ad_description": ["", None], "display_url": ["shop", ""]})
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, batch["attention_mask"].sum(1).max())
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()
    assert query_text("q", "en-GB", "travel", segment=True) == "[en-GB travel] q"
    assert ad_text("t", None, "u") == "t | u"


def test_configs_train_yaml_documents_the_defaults():
    assert load_train_config(Path(__file__).resolve().parent.parent / "configs/train.yaml") == TrainConfig()
