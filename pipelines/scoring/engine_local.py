"""The local engine of `adsrel score` (``--engine local``): no JVM, streaming with pyarrow.

Candidates are read batch by batch (Parquet row groups, CSV blocks, JSON lines), checked and scored
in this process with every core torch is given, and written as they come: memory holds one batch,
whatever the input's size. Rows and layout are those of the Spark engine.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.candidates import (
    CANDIDATE_COLUMNS,
    REQUIRED_COLUMNS,
    SCORE_SCHEMA,
    check_candidates,
    rejected_rows,
    with_model_columns,
)
from features.progress import Progress
from features.staged_output import StagedOutput
from pipelines.data.inputs import count_input_rows, read_arrow_batches
from pipelines.scoring.model import ResolvedModel
from pipelines.scoring.output import Counts, peak_rss_mib
from pipelines.scoring.rows import score_rows

ROWS_PER_FILE = 1_000_000


class _Writers:
    """Parquet files under scores/ (a new one every ROWS_PER_FILE rows) and rejected/reason=*/."""

    def __init__(self, scores: Path, rejected: Path) -> None:
        self.scores_dir, self.rejected_dir = scores, rejected
        scores.mkdir(parents=True)
        rejected.mkdir(parents=True)
        self.scores: pq.ParquetWriter | None = None
        self.in_file = self.files = 0
        self.rejected: dict[str, pq.ParquetWriter] = {}

    def write_scores(self, table: pa.Table) -> None:
        if self.scores is None or self.in_file >= ROWS_PER_FILE:
            self.close_scores()
            self.scores = pq.ParquetWriter(self.scores_dir / f"part-{self.files:05d}.parquet", SCORE_SCHEMA)
            self.files, self.in_file = self.files + 1, 0
        self.scores.write_table(table)
        self.in_file += table.num_rows

    def write_rejected(self, table: pa.Table) -> None:
        for reason in pc.unique(table["reason"]).to_pylist():
            rows = table.filter(pc.equal(table["reason"], reason)).drop_columns(["reason"])
            if reason not in self.rejected:
                directory = self.rejected_dir / f"reason={reason}"
                directory.mkdir()
                self.rejected[reason] = pq.ParquetWriter(directory / "part-00000.parquet", rows.schema)
            self.rejected[reason].write_table(rows)

    def close_scores(self) -> None:
        if self.scores is not None:
            self.scores.close()
            self.scores = None

    def close(self) -> None:
        self.close_scores()
        for writer in self.rejected.values():
            writer.close()


def score_locally(resolved: ResolvedModel, candidates: list[str], out: StagedOutput, *, scored_at: datetime,
                  batch_rows: int = 4096, started: float | None = None, shadow: ResolvedModel | None = None) -> Counts:
    """``started``: the run's ``time.perf_counter()`` start, so that the progress rate counts what the
    summary counts (the model load included)."""
    from models.routing import load_scorer

    scorer = load_scorer(resolved.model_dir)
    shadow_scorer = load_scorer(shadow.model_dir) if shadow else None
    constant = resolved.columns(scored_at, shadow)
    counts = Counts(input_rows=0, scored=0)
    writers = _Writers(out.path("scores"), out.path("rejected"))
    progress = Progress("score", count_input_rows(candidates), every=max(batch_rows, 1), unit="pairs", since=started)
    try:
        for table in read_arrow_batches(candidates, CANDIDATE_COLUMNS, REQUIRED_COLUMNS, batch_rows):
            checked = check_candidates(table, scorer.task_map)
            rejected = rejected_rows(table, checked)
            if rejected.num_rows:
                writers.write_rejected(rejected)
                for reason, n in zip(*pc.value_counts(rejected["reason"]).flatten(), strict=True):
                    counts.rejected[reason.as_py()] = counts.rejected.get(reason.as_py(), 0) + n.as_py()
            accepted = checked.filter(pc.is_null(checked["reason"]))
            if accepted.num_rows:
                rows = score_rows(scorer, accepted, resolved.version, shadow_scorer)
                writers.write_scores(with_model_columns(rows, constant))
            counts.input_rows += table.num_rows
            counts.scored += accepted.num_rows
            progress.update(table.num_rows)
    finally:
        writers.close()
        progress.close()
    counts.peak_memory_mib = {"driver": peak_rss_mib()}
    return counts
