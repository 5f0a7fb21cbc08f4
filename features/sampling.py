"""Task-balanced, streaming, resumable batches from the train shards.

Each task is a stream over its own Parquet files, read in record batches (data larger than memory
trains) and shuffled within a window; the task of every example is drawn with probability
∝ n_t^(1/T_s) (T_s = 1: as in the data; large: uniform), so small segments are not drowned.

Everything random is a pure function of (seed, counter), so the position of the whole pipeline is a
few integers (``state_dict``): a resumed run draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def task_probabilities(counts: Sequence[int], temperature: float) -> np.ndarray:
    """p_t ∝ n_t^(1/T); tasks with no rows get 0."""
    if temperature <= 0:
        raise ValueError(f"task sampling temperature must be > 0, got {temperature}")
    n = np.asarray(counts, dtype=np.float64)
    if n.sum() <= 0:
        raise ValueError("no training rows in any task")
    weights = np.where(n > 0, n, 0.0) ** (1.0 / temperature)
    return weights / weights.sum()


class TaskStream:
    """Endless, deterministic stream of one task's rows: epoch e visits the files in an order drawn
    from (seed, task, e) and shuffles rows within windows of ``window_rows``."""

    def __init__(self, files: Sequence[Path], columns: Sequence[str], *, seed: int, task_id: int,
                 window_rows: int = 8192) -> None:
        self.files = list(files)
        self.columns = list(columns)
        self.seed, self.task_id, self.window_rows = seed, task_id, window_rows
        self.rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        self.consumed = 0
        self._tables: Iterator[pa.Table] | None = None
        self._pending: pa.Table | None = None

    def _generate(self, start: int) -> Iterator[pa.Table]:
        epoch, skip = divmod(start, self.rows)
        while True:
            rng = np.random.default_rng([self.seed, self.task_id, epoch])
            for index in rng.permutation(len(self.files)):
                for batch in pq.ParquetFile(self.files[index]).iter_batches(self.window_rows, columns=self.columns):
                    order = rng.permutation(batch.num_rows)  # drawn even when skipped: same stream either way
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        continue
                    yield pa.Table.from_batches([batch]).take(order[skip:])
                    skip = 0
            epoch += 1

    def take(self, n: int) -> pa.Table:
        if self.rows == 0:
            raise ValueError(f"task {self.task_id} has no rows to sample")
        if self._tables is None:
            self._tables = self._generate(self.consumed)
        parts, need = [], n
        while need > 0:
            table = self._pending if self._pending is not None else next(self._tables)
            self._pending = None
            if table.num_rows > need:
                self._pending = table.slice(need)
                table = table.slice(0, need)
            parts.append(table)
            need -= table.num_rows
        self.consumed += n
        return pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]

    def seek(self, consumed: int) -> None:
        self.consumed, self._tables, self._pending = consumed, None, None


@dataclass
class BatchPlan:
    """What a training step needs from the data: rows (pandas), their tokenisation and the batches."""

    rows: Any
    encoded: dict[str, list[list[int]]]
    batches: list[np.ndarray]


class TaskBalancedBatches:
    """Global batches drawn task-balanced, in "mega-batches" of ``bucket_factor`` batches that are
    tokenised once and cut into batches of similar length (dynamic padding wastes little).

    ``state_dict`` is the position: the mega-batch counter and per-task stream positions at the start
    of the current mega-batch, plus how many of its batches were handed out.
    """

    def __init__(self, files_by_task: dict[int, Sequence[Path]], num_tasks: int, columns: Sequence[str], *,
                 batch_size: int, encode, temperature: float = 1.0, seed: int = 0, bucket_factor: int = 50,
                 window_rows: int = 8192) -> None:
        self.streams = {t: TaskStream(files, columns, seed=seed, task_id=t, window_rows=window_rows)
                        for t, files in files_by_task.items()}
        counts = [self.streams[t].rows if t in self.streams else 0 for t in range(num_tasks)]
        self.counts = counts
        self.probabilities = task_probabilities(counts, temperature)
        self.batch_size, self.encode, self.seed, self.bucket_factor = batch_size, encode, seed, bucket_factor
        self.megabatch = 0
        self.start_consumed = {t: 0 for t in self.streams}
        self.handed_out = 0
        self._plan: BatchPlan | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.counts)

    def _draw(self) -> BatchPlan:
        rng = np.random.default_rng([self.seed, 1_000_003, self.megabatch])
        size = self.batch_size * self.bucket_factor
        tasks = rng.choice(len(self.probabilities), size=size, p=self.probabilities)
        per_task = np.bincount(tasks, minlength=len(self.probabilities))
        tables = [self.streams[t].take(int(k)) for t, k in enumerate(per_task) if k]
        rows = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        rows = rows.iloc[rng.permutation(len(rows))].reset_index(drop=True)
        encoded = self.encode(rows)
        from features.tokenize import length_buckets

        lengths = [len(ids) for ids in encoded["input_ids"]]
        return BatchPlan(rows, encoded, length_buckets(lengths, self.batch_size, rng))

    def next_batch(self) -> tuple[BatchPlan, np.ndarray]:
        """The plan holding the next global batch and the row indices of that batch."""
        if self._plan is None:
            self.start_consumed = {t: s.consumed for t, s in self.streams.items()}
            self._plan = self._draw()  # after a resume mid mega-batch, handed_out skips what was used
        plan = self._plan
        batch = plan.batches[self.handed_out]
        self.handed_out += 1
        if self.handed_out == len(plan.batches):
            self._plan, self.handed_out = None, 0
            self.megabatch += 1
        return plan, batch

    def state_dict(self) -> dict[str, Any]:
        return {"megabatch": self.megabatch, "handed_out": self.handed_out,
                "consumed": {str(t): c for t, c in self.start_consumed.items()} if self._plan is not None
                else {str(t): s.consumed for t, s in self.streams.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.megabatch, self.handed_out, self._plan = int(state["megabatch"]), int(state["handed_out"]), None
        for t, consumed in state["consumed"].items():
            self.streams[int(t)].seek(int(consumed))

    def effective_mix(self) -> dict[int, float]:
        return {t: float(p) for t, p in enumerate(self.probabilities)}
